//! `GET /api/v1/events`: the live feed as Server-Sent Events. Event ids are the change log's
//! sequence numbers, so a client that reconnects with `Last-Event-ID` (to this process after a
//! restart, or to another server on the same store) is replayed what it missed from the store's
//! log; when the log no longer holds it, or the id is beyond the log's head, or the client fell
//! too far behind, it gets `resync`, telling it to reload tiles and counters.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

use super::AppState;
use super::auth::{Caller, scope_of};
use super::error::ApiResult;
use crate::events::{Event, Live};
use crate::model::CaseScope;

fn to_sse(e: &Event) -> SseEvent {
    let ev = SseEvent::default().event(&e.name).data(&e.data);
    if e.last { ev.id(e.seq.to_string()) } else { ev }
}

fn resync(live: &Live) -> SseEvent {
    let head = live.applied();
    SseEvent::default().id(head.to_string()).event("resync").data(format!("{{\"last_id\":{head}}}"))
}

/// Whether a caller with `scope` is told of `e`: the events of its cases and the tiles they
/// redraw (also those of a case leaving its department), the alarms of its area, and everything
/// that names no case (sensors, imports, tiles of many cases at once), and the incidents it has a
/// task in (in its area).
fn visible(scope: &CaseScope, e: &Event) -> bool {
    let (case, alarm, tiles) =
        (e.name.starts_with("case."), e.name.starts_with("alarm."), e.name == "tiles.invalidated");
    let incident = e.name.starts_with("incident.");
    if scope.is_all() || !(case || alarm || tiles || incident) {
        return true;
    }
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&e.data) else { return false };
    if incident {
        let depts = v["tasks"].as_array().into_iter().flatten().filter_map(|t| t["dept_code"].as_str());
        return crate::linkage::visible_at(scope, v["grid_code"].as_str(), depts);
    }
    if tiles {
        let c = &v["case"];
        let grid = c["grid_code"].as_str();
        return c.is_null()
            || scope.sees_parts(c["dept_code"].as_str(), grid)
            || c["previous_dept_code"].as_str().is_some_and(|d| scope.sees_parts(Some(d), grid));
    }
    let grid = v["grid_code"].as_str();
    if case { scope.sees_parts(v["dept_code"].as_str(), grid) } else { scope.in_area(grid) }
}

pub async fn events(
    State(st): State<AppState>,
    who: Option<Caller>,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    let scope = scope_of(&who);
    let last_id = headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(|v| v.trim().parse::<i64>());
    let live = st.live.clone();
    // Subscribed before the replay is read, so nothing falls between the two; what both carry
    // is dropped from the live tail by its id.
    let rx = live.feed.subscribe();
    let mut head: Vec<SseEvent> = Vec::new();
    // What the replay sent, which the live tail then skips (nothing without a replay).
    let mut replayed = 0;
    match last_id {
        None => {}
        // An id that is not a number can only be stale.
        Some(Err(_)) => head.push(resync(&live)),
        Some(Ok(last)) => match live.replay(last).await? {
            None => head.push(resync(&live)),
            Some(mut pages) => {
                replayed = pages.upto();
                loop {
                    let page = pages.next_page().await?;
                    if page.is_empty() {
                        break;
                    }
                    head.extend(page.iter().filter(|e| visible(&scope, e)).map(to_sse));
                }
            }
        },
    }
    // `ready` first, so a client knows the subscription is live before it acts.
    let ready = SseEvent::default().event("ready").data(format!("{{\"last_id\":{}}}", live.applied()));
    let closed = live.feed.closed();
    let tail_live = live.clone();
    let tail = BroadcastStream::new(rx).filter_map(move |r| {
        let out = match r {
            Ok(e) if e.seq <= replayed || !visible(&scope, &e) => None,
            Ok(e) => Some(to_sse(&e)),
            // The client could not keep up and events were dropped for it.
            Err(_) => Some(resync(&tail_live)),
        };
        std::future::ready(out)
    });
    let stream = futures::stream::iter(std::iter::once(ready).chain(head))
        .chain(tail)
        .take_until(closed)
        .map(Ok::<_, Infallible>);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
