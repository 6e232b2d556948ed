//! What each tool does, free of any MCP library: deliveries run in the
//! background through the `Deliverer` (journal first, Idempotency-Key, storage,
//! notifiers); a waiting call only watches one, so a cancelled or timed-out
//! wait leaves the paid job to finish and be found with `get_job`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::watch;
use uncensored::{Balance, CancellationToken, FailureReason, GenerateRequest, Money};
use uncensored_deliver::Deliverer;
use uncensored_deliver::callbacks::Submitter;
use uncensored_deliver::journal::{Entry, Stage};
use uncensored_deliver::thumbnail::Thumbnailer;

use crate::failure::ToolFailure;
use crate::{McpOptions, resources};

/// How a background delivery ended, when it has.
type Outcome = Option<Result<Entry, ToolFailure>>;

/// One progress report of a waiting call.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    /// Seconds waited so far.
    pub elapsed: f64,
    /// The deadline, in seconds.
    pub total: f64,
    /// Where the delivery stands.
    pub message: String,
}

/// Where a waiting call's progress goes.
pub type ProgressSink<'a> =
    &'a (dyn Fn(Progress) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync);

/// The tools' shared state.
#[derive(Debug)]
pub struct Tools {
    pub(crate) deliverer: Deliverer,
    pub(crate) options: McpOptions,
    /// The thumbnails of `generate_image`, a few at a time for all sessions.
    pub(crate) thumbnailer: Thumbnailer,
    running: Mutex<HashMap<String, watch::Receiver<Outcome>>>,
    /// `submit_generation`'s submitter, with [`McpOptions::with_callbacks`].
    submitter: Option<Submitter>,
}

impl Tools {
    pub(crate) fn new(deliverer: Deliverer, options: McpOptions) -> Self {
        let submitter = options.callbacks.as_ref().and_then(|target| {
            Submitter::new(
                deliverer.client().clone(),
                deliverer.journal().clone(),
                target.secret.clone(),
                target.base.clone(),
            )
            .inspect_err(|error| tracing::warn!(%error, "submit_generation runs deliveries itself"))
            .ok()
        });
        Self {
            submitter,
            deliverer,
            thumbnailer: Thumbnailer::new(options.thumbnail_side),
            options,
            running: Mutex::new(HashMap::new()),
        }
    }

    /// The account's balance (`get_balance`), as [`crate::schema::balance_output`] describes it.
    pub async fn balance(&self) -> Result<Value, ToolFailure> {
        let balance = self.deliverer.client().balance().await?;
        Ok(balance_value(&balance))
    }

    /// What `request` would cost now, as the API's estimate says (`None`
    /// when it cannot say: the result then carries no cost).
    pub async fn estimate(&self, request: &GenerateRequest) -> Option<Money> {
        match self.deliverer.client().estimate(request).await {
            Ok(estimate) => Some(estimate.cost),
            Err(error) => {
                tracing::debug!(%error, "no estimate for the result's cost");
                None
            }
        }
    }

    /// `submit_generation` with callbacks: submits `request` as an async job
    /// recorded in the journal (the callback service delivers it), and
    /// answers its entry as `get_job` does; `None` without callbacks.
    pub async fn submit_async(
        &self,
        request: &GenerateRequest,
    ) -> Result<Option<Value>, ToolFailure> {
        let Some(submitter) = &self.submitter else {
            return Ok(None);
        };
        let submitted = submitter.submit(request).await?;
        self.get_job(&submitted.id).await.map(Some)
    }

    /// Starts delivering `request` in the background under a new id.
    pub fn start(&self, request: GenerateRequest) -> String {
        let id = format!("mcp-{}", uuid::Uuid::new_v4());
        let (sender, receiver) = watch::channel(None);
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), receiver);
        let deliverer = self.deliverer.clone();
        let task_id = id.clone();
        tokio::spawn(async move {
            let outcome = deliverer
                .deliver(&task_id, &request)
                .await
                .map_err(ToolFailure::from);
            if let Err(failure) = &outcome {
                tracing::warn!(id = %task_id, reason = %failure.reason, "delivery stopped");
            }
            let _ = sender.send(Some(outcome));
        });
        id
    }

    /// Waits for delivery `id` until it ends, `timeout` passes or `cancel`
    /// fires, reporting progress at once and then every second.
    pub async fn wait(
        &self,
        id: &str,
        timeout: Duration,
        cancel: &CancellationToken,
        progress: ProgressSink<'_>,
    ) -> Result<Entry, ToolFailure> {
        let Some(mut outcome) = self.receiver(id) else {
            return Err(ToolFailure::new(
                FailureReason::NotFound,
                format!("no delivery {id} is running"),
            ));
        };
        let started = Instant::now();
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        // The first report goes out before anything can end the wait.
        ticks.tick().await;
        progress(Progress {
            elapsed: 0.0,
            total: timeout.as_secs_f64(),
            message: format!("delivery {id}: submitted"),
        })
        .await;
        loop {
            if let Some(done) = outcome.borrow_and_update().clone() {
                return done;
            }
            tokio::select! {
                changed = outcome.changed() => {
                    if changed.is_err() {
                        return Err(ToolFailure::new(FailureReason::Other, format!("delivery {id} ended without an outcome")));
                    }
                }
                _ = ticks.tick() => {
                    let message = self.status_word(id).await;
                    progress(Progress {
                        elapsed: started.elapsed().as_secs_f64(),
                        total: timeout.as_secs_f64(),
                        message: format!("delivery {id}: {message}"),
                    }).await;
                }
                _ = &mut deadline => {
                    return Err(ToolFailure::new(FailureReason::TimedOut, format!(
                        "delivery {id} was not finished after {}s; it goes on: ask get_job with this id", timeout.as_secs())));
                }
                _ = cancel.cancelled() => {
                    return Err(ToolFailure::new(FailureReason::Cancelled, format!(
                        "waiting for delivery {id} was cancelled; the job goes on: ask get_job with this id")));
                }
            }
        }
    }

    fn receiver(&self, id: &str) -> Option<watch::Receiver<Outcome>> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Where delivery `id` stands, as one word, from the journal.
    async fn status_word(&self, id: &str) -> &'static str {
        match self.deliverer.journal().get(id).await {
            Ok(Some(entry)) => entry.stage.name(),
            _ => "pending",
        }
    }

    /// `get_job`: a delivery of this server (from its journal), else a job of the API.
    pub async fn get_job(&self, id: &str) -> Result<Value, ToolFailure> {
        let journal = self.deliverer.journal();
        let entry = journal.get(id).await.map_err(ToolFailure::from)?;
        if let Some(entry) = entry {
            let mut value = delivery_value(&entry);
            let stopped = self
                .receiver(id)
                .and_then(|r| r.borrow().clone())
                .and_then(Result::err);
            if let (Some(failure), false) = (stopped, entry.done) {
                value["status"] = json!("stopped");
                value["error"] = json!(failure);
            }
            return Ok(value);
        }
        let job = self.deliverer.client().job(id).await?;
        Ok(json!({
            "id": id,
            "status": job.status.as_str(),
            "job_id": job.job_id,
            "model": job.model,
            "generation_time": job.generation_time,
        }))
    }

    /// `list_images`: the most recent deliveries of the journal.
    pub async fn list(&self, limit: usize) -> Result<Value, ToolFailure> {
        let entries = self.recent(limit).await?;
        let images: Vec<Value> = entries
            .iter()
            .map(|entry| {
                let model = match &entry.stage {
                    Stage::Stored(image) => image.model.clone(),
                    Stage::Generated { model, .. } => model.clone(),
                    _ => None,
                }
                .or_else(|| entry.request.model_name().map(str::to_string));
                json!({
                    "id": entry.id,
                    "prompt": entry.request.prompt(),
                    "model": model,
                    "status": entry.stage.name(),
                    "location": entry.location(),
                    "uri": entry.location().map(|_| resources::uri(&entry.id)),
                    "updated_at": entry.updated_at.to_rfc3339(),
                })
            })
            .collect();
        Ok(json!({ "images": images }))
    }

    /// Up to `limit` deliveries of the journal, most recently updated first
    /// (done or not, made by this server or by any other on the same journal).
    pub async fn recent(&self, limit: usize) -> Result<Vec<Entry>, ToolFailure> {
        self.deliverer
            .journal()
            .recent(limit)
            .await
            .map_err(ToolFailure::from)
    }
}

/// A delivery's structured content (the output schema of `generate_image`).
pub fn delivery_value(entry: &Entry) -> Value {
    let (width, height) = entry.request.dimensions();
    let mut value = json!({
        "id": entry.id,
        "status": entry.stage.name(),
        "width": width,
        "height": height,
        "model": entry.request.model_name(),
    });
    match &entry.stage {
        Stage::Accepted { job_id } => value["job_id"] = json!(job_id),
        Stage::Generated {
            job_id,
            generation_time,
            model,
            ..
        } => {
            value["job_id"] = json!(job_id);
            value["generation_time"] = json!(generation_time);
            if model.is_some() {
                value["model"] = json!(model);
            }
        }
        Stage::Stored(image) => {
            // The image's one record, field by field.
            if let Ok(Value::Object(fields)) = serde_json::to_value(image) {
                for (key, field) in fields {
                    if !(key == "model" && field.is_null()) {
                        value[key] = field;
                    }
                }
            }
            value["uri"] = json!(resources::uri(&entry.id));
        }
        Stage::Failed {
            job_id,
            reason,
            message,
        } => {
            value["job_id"] = json!(job_id);
            value["error"] = json!(ToolFailure::new(*reason, message.clone()));
        }
        _ => {}
    }
    value
}

/// A balance as `get_balance` answers it: nanos and USD text per amount.
pub fn balance_value(balance: &Balance) -> Value {
    let amounts = [
        balance.balance,
        balance.held,
        balance.available,
        balance.daily_spend,
        balance.monthly_spend,
    ];
    let mut value = serde_json::Map::new();
    for ((name, _), amount) in crate::schema::BALANCE_FIELDS.iter().zip(amounts) {
        value.insert(format!("{name}_nanos"), json!(amount.nanos()));
        value.insert((*name).to_string(), json!(amount.to_string()));
    }
    Value::Object(value)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use uncensored::callback::CallbackSecret;
    use uncensored_deliver::journal::{CallbackNonces as _, Entries as _, SqliteJournal, Stage};
    use uncensored_deliver::storage::StorageUrl;

    use super::*;

    const SECRET: &str = "mcp-callback-secret-0123456789abcdef-0123";

    /// With callbacks, `submit_generation` submits an async job recorded in
    /// the journal before the POST and bound to its nonce after it, so that
    /// the callback service of that journal delivers it (or polls it).
    #[tokio::test]
    async fn submit_generation_records_its_submission_for_the_callback_service() {
        let emulator = uncensored_emulator::Emulator::start(uncensored_emulator::Config {
            rate_limit_rpm: 1_000_000,
            ..uncensored_emulator::Config::default()
        })
        .await
        .unwrap();
        let client = uncensored::Client::builder()
            .base_url(emulator.base_url())
            .api_key(uncensored_emulator::DEFAULT_KEY)
            .build()
            .unwrap();
        let storage = Arc::new(StorageUrl::parse("memory://").unwrap().open().unwrap());
        let journal = Arc::new(SqliteJournal::in_memory().unwrap());
        let secret = CallbackSecret::new(SECRET).unwrap();
        let options = McpOptions::default()
            .with_callbacks(secret.clone(), "http://127.0.0.1:9")
            .unwrap();
        assert!(
            McpOptions::default()
                .with_callbacks(secret.clone(), "ftp://nowhere.example")
                .is_err()
        );
        assert!(!format!("{options:?}").contains(SECRET));
        let tools = Tools::new(Deliverer::new(client, storage, journal.clone()), options);
        let value = tools
            .submit_async(&GenerateRequest::new("a lighthouse").size(256, 256))
            .await
            .unwrap()
            .expect("submitted asynchronously");
        let id = value["id"].as_str().unwrap();
        let job_id = value["job_id"].as_str().unwrap();
        assert_eq!(value["status"], "accepted", "{value}");

        let entry = journal.get(id).await.unwrap().unwrap();
        assert_eq!(
            entry.stage,
            Stage::Accepted {
                job_id: job_id.into()
            }
        );
        assert!(!entry.idempotency_key.is_empty());
        let url = entry.request.callback().unwrap();
        let path = url.trim_start_matches("http://127.0.0.1:9");
        let nonce = secret.verify_path(path).unwrap();
        assert_eq!(
            journal
                .callback_nonce_job(nonce.as_str())
                .await
                .unwrap()
                .as_deref(),
            Some(job_id),
            "the nonce is bound to its job at submission"
        );

        // Without callbacks, the server runs the delivery itself.
        let plain = Tools::new(tools.deliverer.clone(), McpOptions::default());
        assert!(
            plain
                .submit_async(&GenerateRequest::new("x"))
                .await
                .unwrap()
                .is_none()
        );
    }
}
