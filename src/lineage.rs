//! OpenLineage run events (START, COMPLETE, FAIL) with the run's input and
//! output datasets, posted to an HTTP endpoint or appended as JSON lines to a
//! file (`--lineage URL-or-FILE`). Lineage never fails a run: a delivery
//! error is logged as a warning.

use chrono::Utc;
use serde_json::{json, Value};

use crate::storage::Location;

const PRODUCER: &str = concat!(
    "https://github.com/custval/custval/tree/v",
    env!("CARGO_PKG_VERSION")
);
const SCHEMA: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/definitions/RunEvent";

/// Where events go and what run they describe.
#[derive(Debug, Clone)]
pub struct Lineage {
    target: String,
    run_uuid: String,
    job: String,
}

/// OpenLineage dataset naming: namespace = scheme and authority, name = path.
pub fn dataset(loc: &Location) -> Value {
    let url = loc.url();
    let namespace = match url.scheme() {
        "file" => "file".to_string(),
        s => format!("{s}://{}", url.authority()),
    };
    json!({"namespace": namespace, "name": url.path()})
}

impl Lineage {
    /// Events of one new run of `job`, sent to `target` (an http(s) URL, or a file to append JSON lines to).
    pub fn new(target: &str, job: &str) -> Lineage {
        // A random version-4 UUID, as OpenLineage requires for runId.
        let mut b: [u8; 16] = rand::random();
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
        let run_uuid = format!(
            "{}-{}-{}-{}-{}",
            &h[0..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..32]
        );
        Lineage {
            target: target.to_string(),
            run_uuid,
            job: job.to_string(),
        }
    }

    /// Build and deliver one event.
    pub async fn emit(
        &self,
        event_type: &str,
        run_id: Option<&str>,
        inputs: &[Value],
        outputs: &[Value],
        error: Option<&str>,
    ) {
        let mut run_facets = serde_json::Map::new();
        if let Some(id) = run_id {
            run_facets.insert(
                "custval".into(),
                json!({"_producer": PRODUCER, "_schemaURL": SCHEMA, "runId": id}),
            );
        }
        if let Some(msg) = error {
            run_facets.insert(
                "errorMessage".into(),
                json!({
                    "_producer": PRODUCER,
                    "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
                    "message": msg,
                    "programmingLanguage": "Rust"
                }),
            );
        }
        let event = json!({
            "eventType": event_type,
            "eventTime": Utc::now().to_rfc3339(),
            "producer": PRODUCER,
            "schemaURL": SCHEMA,
            "run": {"runId": self.run_uuid, "facets": run_facets},
            "job": {"namespace": "custval", "name": self.job},
            "inputs": inputs,
            "outputs": outputs,
        });
        if let Err(e) = self.deliver(&event).await {
            tracing::warn!(target = %self.target, error = %e, "could not deliver a lineage event");
        }
    }

    async fn deliver(&self, event: &Value) -> Result<(), String> {
        let body = serde_json::to_string(event).map_err(|e| e.to_string())?;
        if self.target.starts_with("http://") || self.target.starts_with("https://") {
            let resp = reqwest::Client::new()
                .post(&self.target)
                .header("content-type", "application/json")
                .body(body)
                .timeout(std::time::Duration::from_secs(10))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if !resp.status().is_success() {
                return Err(format!("HTTP {}", resp.status()));
            }
            Ok(())
        } else {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.target)
                .map_err(|e| e.to_string())?;
            writeln!(f, "{body}").map_err(|e| e.to_string())
        }
    }
}
