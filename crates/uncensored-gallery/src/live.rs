//! Live updates: one task polls the storage and the journal on an interval
//! and tells every open page what changed, as server-sent events: `image`
//! (a new image's record), `batch` (the batch view, when it changed) and
//! `reload` (a page fell too far behind and should fetch again).

use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt as _, stream};
use tokio::sync::broadcast;
use uncensored::CancellationToken;

use crate::batch::BatchView;
use crate::catalog::ImageRecord;
use crate::server::Shared;

/// Something a page should know.
#[derive(Debug, Clone)]
pub enum Change {
    /// A new image is stored.
    Image(Arc<ImageRecord>),
    /// The batch moved.
    Batch(Arc<BatchView>),
}

/// Polls until `stop` resolves; each round adds new images and rereads the journal.
pub async fn poll(shared: Arc<Shared>, stop: impl std::future::Future<Output = ()>) {
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(shared.options.poll_interval) => {}
        }
        refresh(&shared).await;
    }
}

/// One round: new images, then the batch view; each change broadcast.
pub async fn refresh(shared: &Shared) {
    match shared.catalog.refresh().await {
        Ok(added) => {
            for record in added {
                let _ = shared.changes.send(Change::Image(record));
            }
        }
        Err(error) => tracing::warn!(%error, "cannot list the storage"),
    }
    if let Some(journal) = &shared.journal {
        match BatchView::read(journal).await {
            Ok(view) => {
                let changed = *shared
                    .batch
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_ref()
                    != view;
                if changed {
                    let view = Arc::new(view);
                    *shared.batch.write().unwrap_or_else(|p| p.into_inner()) = view.clone();
                    let _ = shared.changes.send(Change::Batch(view));
                }
            }
            Err(error) => tracing::warn!(%error, "cannot read the journal"),
        }
    }
}

/// The event stream of one page; it ends when `closing` is cancelled (the
/// gallery shuts down), so that shutting down waits for no page.
pub fn events(
    receiver: broadcast::Receiver<Change>,
    closing: CancellationToken,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let stream = stream::unfold(receiver, |mut receiver| async move {
        let event = match receiver.recv().await {
            Ok(Change::Image(record)) => Event::default()
                .event("image")
                .json_data(record.as_ref())
                .ok()?,
            Ok(Change::Batch(view)) => Event::default()
                .event("batch")
                .json_data(view.as_ref())
                .ok()?,
            Err(broadcast::error::RecvError::Lagged(_)) => {
                Event::default().event("reload").data("lagged")
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(event), receiver))
    })
    .take_until(closing.cancelled_owned());
    Sse::new(stream).keep_alive(KeepAlive::default())
}
