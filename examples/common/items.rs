//! The demo's catalogue: its items, and the handlers that read and add
//! them (the "database" is a `Vec` behind a lock in the app state).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Extension;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tower_perf::query_cache::{EntryOptions, QueryKey};
use tower_perf::timing::{SpanGuard, Timings};

use super::{AppState, MAX_ITEMS};

/// One item of the demo catalogue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Item {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) price_cents: u64,
    pub(crate) tags: Vec<String>,
}

/// The body of `POST /api/v1/items`.
#[derive(Debug, Deserialize)]
pub(crate) struct NewItem {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    price_cents: u64,
    #[serde(default)]
    tags: Vec<String>,
}

/// The catalogue the server starts with: 55 items, about 8 KiB of JSON.
pub(crate) fn seed_items() -> Vec<Item> {
    const WORDS: [&str; 8] = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
    ];
    (1..=55u64)
        .map(|id| {
            let w = |k: u64| WORDS[((id * 7 + k * 3) % 8) as usize];
            Item {
                id,
                name: format!("Item {id:03} {}", w(0)),
                description: format!(
                    "A {} {} for {} use; ships from warehouse {}.",
                    w(1),
                    w(2),
                    w(3),
                    id % 5 + 1
                ),
                price_cents: 199 + id * 137 % 9_000,
                tags: vec![w(4).to_owned(), w(5).to_owned()],
            }
        })
        .collect()
}

pub(crate) fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// The demo's "database" is a `Vec` behind a lock; reads are recorded as
/// `db` sub-timings, as a real query would be.
pub(crate) fn db_span(timings: &Option<Extension<Timings>>) -> Option<SpanGuard> {
    timings.as_ref().map(|Extension(t)| t.start("db"))
}

pub(crate) async fn list_items(
    State(state): State<Arc<AppState>>,
    timings: Option<Extension<Timings>>,
) -> Response {
    let span = db_span(&timings);
    // Serialize under the read lock (no await inside), answer after.
    let body = match state.items.read() {
        Ok(items) => serde_json::to_vec(&*items),
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "item store poisoned"),
    };
    drop(span);
    match body {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "serialization failed"),
    }
}

pub(crate) async fn get_item(
    State(state): State<Arc<AppState>>,
    Path(id): Path<u64>,
    timings: Option<Extension<Timings>>,
) -> Response {
    let _span = db_span(&timings);
    let found = match state.items.read() {
        Ok(items) => items.iter().find(|i| i.id == id).cloned(),
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "item store poisoned"),
    };
    match found {
        Some(item) => Json(item).into_response(),
        None => error(StatusCode::NOT_FOUND, "no such item"),
    }
}

/// The demo database failed (its lock was poisoned by a panic).
#[derive(Debug)]
struct Poisoned;

/// A report over every item that fetches them one query at a time: an N+1
/// on purpose, for the timing layer to flag. Each query goes through the
/// query cache (namespace `items`), so only a call after a write queries
/// again; the timing layer sees `cache.miss:items` then `cache.hit:items`
/// sub-timings, and flags only the misses' `db` queries.
pub(crate) async fn report_items(
    State(state): State<Arc<AppState>>,
    timings: Option<Extension<Timings>>,
) -> Response {
    let queries = match &timings {
        Some(Extension(t)) => state.queries.with_timings(t),
        None => state.queries.clone(),
    };
    let (st, t) = (Arc::clone(&state), timings.clone());
    let ids = queries
        .get_or_insert_with(
            &QueryKey::new("items:ids"),
            EntryOptions::default(),
            move || async move {
                let _span = db_span(&t);
                let items = st.items.read().map_err(|_| Poisoned)?;
                Ok::<Vec<u64>, Poisoned>(items.iter().map(|i| i.id).collect())
            },
        )
        .await;
    let Ok(ids) = ids else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "item store poisoned");
    };
    let mut total_price_cents = 0u64;
    for &id in ids.iter() {
        // One query per item, keyed by its id.
        let (state, timings) = (Arc::clone(&state), timings.clone());
        let price = queries
            .get_or_insert_with(
                &QueryKey::with_params("items", &id),
                EntryOptions::default(),
                move || async move {
                    let _span = db_span(&timings);
                    let items = state.items.read().map_err(|_| Poisoned)?;
                    Ok::<_, Poisoned>(
                        items
                            .iter()
                            .find(|i| i.id == id)
                            .map_or(0, |i| i.price_cents),
                    )
                },
            )
            .await;
        match price {
            Ok(p) => total_price_cents += *p,
            Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "item store poisoned"),
        }
    }
    Json(serde_json::json!({ "items": ids.len(), "total_price_cents": total_price_cents }))
        .into_response()
}

pub(crate) async fn add_item(
    State(state): State<Arc<AppState>>,
    Json(new): Json<NewItem>,
) -> Response {
    let name = new.name.trim();
    if name.is_empty() || name.len() > 200 {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "name must be 1 to 200 bytes",
        );
    }
    if new.description.len() > 2_000 || new.tags.len() > 16 || new.tags.iter().any(|t| t.len() > 50)
    {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "description or tags too long",
        );
    }
    let item = {
        let mut items = match state.items.write() {
            Ok(items) => items,
            Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "item store poisoned"),
        };
        if items.len() >= MAX_ITEMS {
            return error(StatusCode::INSUFFICIENT_STORAGE, "item limit reached");
        }
        let item = Item {
            id: state.next_id.fetch_add(1, Ordering::Relaxed),
            name: name.to_owned(),
            description: new.description,
            price_cents: new.price_cents,
            tags: new.tags,
        };
        items.push(item.clone());
        item
    };
    // What the report read is out of date (without Redis this can't
    // fail; with it, a failure is replayed when Redis answers).
    if let Err(e) = state.queries.invalidate_namespace("items").await {
        eprintln!("warning: query cache invalidation deferred: {e}");
    }
    (
        StatusCode::CREATED,
        [(header::LOCATION, format!("/api/v1/items/{}", item.id))],
        Json(item),
    )
        .into_response()
}
