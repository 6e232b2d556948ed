//! The billing group of openapi.yaml over the emulator's ledger: the
//! balance (`billing:read`), the transactions a page at a time
//! (`billing:read`), the estimate of a generation (any key; nothing is held),
//! and the spend limits (`billing:read`, an assumption of the spec).
//!
//! Credits are shown as nanos at `nanos_per_credit`; each `*_usd` field is
//! its nanos twin rounded to a millionth of a dollar, for display.

use axum::body::Body;
use axum::extract::{RawQuery, Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use uncensored_api::limits::list_billing_transactions as page_spec;
use uncensored_api::limits::spend_limits_request as limits_spec;

use super::middleware::{Account, BILLING_READ, has_billing_scope};
use super::validation::{json_object, validate};
use crate::config::KeyConfig;
use crate::error::ApiError;
use crate::ledger::Limits;
use crate::state::AppState;

/// The prefix of a transaction id; the cursor of a page is the id of its
/// last transaction.
const TRANSACTION_PREFIX: &str = "txn_";

/// The fields of `SpendLimitsRequest`.
const LIMIT_FIELDS: [&str; 2] = ["daily_limit_nanos", "monthly_limit_nanos"];

/// `GET /v1/billing/balance`.
pub async fn balance(
    State(state): State<AppState>,
    axum::Extension(Account(account)): axum::Extension<Account>,
) -> Response {
    if let Err(refused) = billing_scope(&account) {
        return refused.into_response();
    }
    let money = state.billing(&account.name);
    let mut body = Map::new();
    for (name, credits) in [
        ("balance", money.balance),
        ("held", money.held),
        ("available", money.available),
        ("daily_spend", money.daily_spend),
        ("monthly_spend", money.monthly_spend),
    ] {
        money_fields(&mut body, name, state.with_ledger(|l| l.nanos(credits)));
    }
    axum::Json(Value::Object(body)).into_response()
}

/// `GET /v1/billing/transactions?limit=&cursor=`: newest first.
pub async fn transactions(
    State(state): State<AppState>,
    axum::Extension(Account(account)): axum::Extension<Account>,
    RawQuery(query): RawQuery,
) -> Response {
    if let Err(refused) = billing_scope(&account) {
        return refused.into_response();
    }
    let (limit, before) = match page_query(query.as_deref().unwrap_or("")) {
        Ok(query) => query,
        Err(error) => return error.into_response(),
    };
    let (page, next) = state.with_ledger(|ledger| {
        let (page, next) = ledger.page(&account.name, before, limit);
        let rows: Vec<Value> = page
            .iter()
            .map(|t| {
                let mut row = Map::new();
                row.insert("id".into(), json!(transaction_id(t.seq)));
                row.insert("type".into(), json!("charge"));
                money_fields(&mut row, "amount", ledger.nanos(t.credits));
                row.insert("job_id".into(), json!(t.job_id));
                row.insert("model".into(), json!(t.model));
                row.insert(
                    "created_at".into(),
                    json!(t.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                );
                Value::Object(row)
            })
            .collect();
        (rows, next)
    });
    let mut body = json!({ "data": page });
    if let Some(next) = next {
        body["next_cursor"] = json!(transaction_id(next));
    }
    axum::Json(body).into_response()
}

/// `POST /v1/billing/estimate`: the price of a generation, validated as
/// `generate_image` validates it; nothing is held.
pub async fn estimate(State(state): State<AppState>, request: Request) -> Response {
    let headers = request.headers().clone();
    let body = match read_body(&state, request.into_body()).await {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    match validate(&state, &headers, &body) {
        Ok(valid) => {
            let mut answer = Map::new();
            money_fields(
                &mut answer,
                "cost",
                state.with_ledger(|l| l.nanos(valid.price)),
            );
            answer.insert("model".into(), json!(valid.model.name));
            axum::Json(Value::Object(answer)).into_response()
        }
        Err(error) => error.into_response(),
    }
}

/// `PUT /v1/billing/limits`: replaces both limits; one left out is removed.
pub async fn set_limits(
    State(state): State<AppState>,
    axum::Extension(Account(account)): axum::Extension<Account>,
    request: Request,
) -> Response {
    let headers: HeaderMap = request.headers().clone();
    let body = match read_body(&state, request.into_body()).await {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    if let Err(refused) = billing_scope(&account) {
        return refused.into_response();
    }
    let limits = match json_object(&headers, &body).and_then(|fields| parse_limits(&fields)) {
        Ok(limits) => limits,
        Err(error) => return error.into_response(),
    };
    state.with_ledger(|ledger| ledger.set_limits(&account.name, limits));
    let mut answer = Map::new();
    for (field, limit) in LIMIT_FIELDS
        .iter()
        .zip([limits.daily_nanos, limits.monthly_nanos])
    {
        if let Some(nanos) = limit {
            answer.insert((*field).into(), json!(nanos));
        }
    }
    axum::Json(Value::Object(answer)).into_response()
}

/// `403 permission_error` unless the key has `billing:read`.
fn billing_scope(account: &KeyConfig) -> Result<(), ApiError> {
    if has_billing_scope(account) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "This API key lacks the {BILLING_READ} scope"
        )))
    }
}

async fn read_body(state: &AppState, body: Body) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, state.config.max_body_bytes)
        .await
        .map_err(|_| ApiError::too_large(state.config.max_body_bytes))
}

/// `{name}_usd` and `{name}_nanos`.
fn money_fields(body: &mut Map<String, Value>, name: &str, nanos: u64) {
    let nanos = i64::try_from(nanos).unwrap_or(i64::MAX);
    body.insert(format!("{name}_usd"), usd(nanos));
    body.insert(format!("{name}_nanos"), json!(nanos));
}

/// Nanos as USD for display: rounded (half away from zero) to a millionth
/// of a dollar in integers, then written as a JSON number.
fn usd(nanos: i64) -> Value {
    let micros = (i128::from(nanos) + i128::from(nanos.signum()) * 500) / 1000;
    // A millionth-dollar count below 2^53 is exact as f64, and so is its
    // shortest decimal form divided by a million.
    json!(micros as f64 / 1_000_000.0)
}

fn transaction_id(seq: u64) -> String {
    format!("{TRANSACTION_PREFIX}{seq:016}")
}

/// `limit` (the spec's bounds and default) and `cursor` (an id this
/// emulator gave) of a transactions request.
fn page_query(query: &str) -> Result<(usize, Option<u64>), ApiError> {
    let mut limit = page_spec::LIMIT_DEFAULT;
    let mut before = None;
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match name.as_ref() {
            "limit" => {
                limit = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (page_spec::LIMIT_MINIMUM..=page_spec::LIMIT_MAXIMUM).contains(n))
                    .ok_or_else(|| {
                        ApiError::invalid(
                            Some("limit"),
                            format!(
                                "limit must be an integer from {} to {}",
                                page_spec::LIMIT_MINIMUM,
                                page_spec::LIMIT_MAXIMUM
                            ),
                        )
                    })?;
            }
            "cursor" => {
                let length = value.chars().count();
                before = Some(
                    Some(&value)
                        .filter(|_| {
                            (page_spec::CURSOR_MIN_LENGTH..=page_spec::CURSOR_MAX_LENGTH)
                                .contains(&length)
                        })
                        .and_then(|v| v.strip_prefix(TRANSACTION_PREFIX))
                        .filter(|digits| digits.bytes().all(|b| b.is_ascii_digit()))
                        .and_then(|digits| digits.parse::<u64>().ok())
                        .ok_or_else(|| {
                            ApiError::invalid(
                                Some("cursor"),
                                "cursor must be the next_cursor of an earlier page",
                            )
                        })?,
                );
            }
            _ => {}
        }
    }
    Ok((limit as usize, before))
}

/// A `SpendLimitsRequest`: only its fields, each an integer from its
/// `minimum` to the largest int64.
fn parse_limits(fields: &Map<String, Value>) -> Result<Limits, ApiError> {
    if let Some(unknown) = fields.keys().find(|k| !LIMIT_FIELDS.contains(&k.as_str())) {
        return Err(ApiError::invalid(
            Some(unknown),
            format!("Unsupported parameter: {unknown}"),
        ));
    }
    let limit = |name: &str, minimum: u64| -> Result<Option<u64>, ApiError> {
        let Some(value) = fields.get(name) else {
            return Ok(None);
        };
        value
            .as_u64()
            .filter(|n| (minimum..=i64::MAX as u64).contains(n))
            .map(Some)
            .ok_or_else(|| {
                ApiError::invalid(
                    Some(name),
                    format!("{name} must be an integer from {minimum} to {}", i64::MAX),
                )
            })
    };
    Ok(Limits {
        daily_nanos: limit(LIMIT_FIELDS[0], limits_spec::DAILY_LIMIT_NANOS_MINIMUM)?,
        monthly_nanos: limit(LIMIT_FIELDS[1], limits_spec::MONTHLY_LIMIT_NANOS_MINIMUM)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usd_is_rounded_to_a_millionth_without_drift() {
        assert_eq!(usd(40_000_000), json!(0.04));
        assert_eq!(usd(1_234_567_891), json!(1.234568));
        assert_eq!(usd(-1_500), json!(-0.000002));
        assert_eq!(usd(0), json!(0.0));
    }

    #[test]
    fn a_cursor_is_an_id_this_emulator_gave() {
        assert_eq!(page_query("").unwrap(), (20, None));
        assert_eq!(
            page_query("limit=3&cursor=txn_0000000000000007").unwrap(),
            (3, Some(7))
        );
        for bad in [
            "limit=0",
            "limit=101",
            "limit=x",
            "cursor=",
            "cursor=txn_",
            "cursor=abc",
            "cursor=txn_-1",
        ] {
            assert!(page_query(bad).is_err(), "{bad}");
        }
    }
}
