//! What the lines of a batch that are not done yet will cost, before
//! anything is sent or paid.

use std::collections::HashMap;

use serde::Serialize;
use uncensored::{GenerateRequest, Money};

use super::{Prices, shape};
use crate::DeliveryError;
use crate::journal::{Journal, JournalError, LineIds};

/// Lines asked of the journal at once.
const CHUNK: usize = 1_000;

/// The price of one request shape and how many lines have it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShapeCost {
    /// The model.
    pub model: String,
    /// The width.
    pub width: u32,
    /// The height.
    pub height: u32,
    /// The resolution asked, if one was.
    pub resolution: Option<String>,
    /// The quality asked, if one was.
    pub quality: Option<String>,
    /// Lines not yet done with this shape.
    pub lines: u64,
    /// The price of one (`price_nanos`).
    #[serde(rename = "price_nanos")]
    pub price: Money,
}

/// The cost of the lines of a batch that are not done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BatchEstimate {
    /// Lines in the file.
    pub lines: u64,
    /// Lines the journal has done (delivered, or failed for good): not counted.
    pub done: u64,
    /// Lines not done: pending in the journal, or not loaded yet.
    pub pending: u64,
    /// What they cost together (`cost_nanos`).
    #[serde(rename = "cost_nanos")]
    pub cost: Money,
    /// The cost per distinct request shape, most lines first.
    pub shapes: Vec<ShapeCost>,
    /// Estimates asked of the API (one per shape).
    pub estimate_calls: u64,
}

impl BatchEstimate {
    /// How it was computed, for people.
    pub fn method(&self) -> String {
        format!(
            "priced with POST /v1/billing/estimate once per distinct request shape (model, size, resolution, quality, settings; the prompt is assumed not to change a price): {} shapes, {} estimates asked; {} lines the journal has done are not counted; nothing was sent or paid",
            self.shapes.len(),
            self.estimate_calls,
            self.done
        )
    }
}

/// Estimates the lines of the batch `batch` that `journal` (if there is
/// one) has not done: `lines` yields each line's number and request in
/// file order, as for [`crate::worker::load`]. Nothing is written to the
/// journal and no line is submitted; each shape is priced once.
pub async fn estimate(
    prices: &Prices,
    journal: Option<&dyn Journal>,
    batch: &str,
    lines: impl Iterator<Item = Result<(u64, GenerateRequest), JournalError>>,
) -> Result<BatchEstimate, DeliveryError> {
    let calls_before = prices.calls();
    let mut ids = LineIds::new(batch);
    let mut shapes: HashMap<String, (GenerateRequest, u64)> = HashMap::new();
    let (mut total, mut done) = (0u64, 0u64);
    let mut chunk: Vec<(String, GenerateRequest)> = Vec::with_capacity(CHUNK);
    let mut lines = lines.peekable();
    while lines.peek().is_some() {
        chunk.clear();
        for line in lines.by_ref().take(CHUNK) {
            let (_, request) = line?;
            chunk.push((ids.next(&request), request));
        }
        total += chunk.len() as u64;
        let finished: std::collections::HashSet<String> = match journal {
            Some(journal) => {
                let ids: Vec<String> = chunk.iter().map(|(id, _)| id.clone()).collect();
                journal.done_among(&ids).await?.into_iter().collect()
            }
            None => Default::default(),
        };
        for (id, request) in chunk.drain(..) {
            if finished.contains(&id) {
                done += 1;
                continue;
            }
            shapes
                .entry(shape(&request))
                .and_modify(|(_, n)| *n += 1)
                .or_insert((request, 1));
        }
    }
    let mut priced = Vec::with_capacity(shapes.len());
    let mut cost = Money::ZERO;
    let overflow = || DeliveryError::Journal(JournalError::new("the estimate overflows"));
    for (request, count) in shapes.into_values() {
        let price = prices.price(&request).await.map_err(DeliveryError::Api)?;
        cost = price
            .checked_mul(count)
            .and_then(|sum| cost.checked_add(sum))
            .ok_or_else(overflow)?;
        let (width, height) = request.dimensions();
        let value = serde_json::to_value(&request).unwrap_or_default();
        let field = |name: &str| value.get(name).and_then(|v| v.as_str()).map(String::from);
        priced.push(ShapeCost {
            model: request
                .model_name()
                .unwrap_or(uncensored::api::limits::generate_image_request::MODEL_DEFAULT)
                .to_string(),
            width,
            height,
            resolution: field("resolution"),
            quality: field("quality"),
            lines: count,
            price,
        });
    }
    priced.sort_by(|a, b| b.lines.cmp(&a.lines).then(a.model.cmp(&b.model)));
    Ok(BatchEstimate {
        lines: total,
        done,
        pending: total - done,
        cost,
        shapes: priced,
        estimate_calls: prices.calls() - calls_before,
    })
}
