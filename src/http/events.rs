//! `GET /api/v1/events`: the live feed as Server-Sent Events. A client that reconnects with
//! `Last-Event-ID` gets what it missed from the recent past, or a `resync` event when that is
//! gone (or when it fell too far behind), telling it to reload tiles and counters.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;

use super::AppState;
use crate::events::Event;

fn to_sse(e: &Event) -> SseEvent {
    SseEvent::default().id(e.id.to_string()).event(e.name).data(&e.data)
}

fn resync(last_id: u64) -> SseEvent {
    SseEvent::default().event("resync").data(format!("{{\"last_id\":{last_id}}}"))
}

pub async fn events(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let last_id = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    let feed = &st.live.feed;
    let (rx, replay) = feed.subscribe(last_id);
    let head: Vec<SseEvent> = match replay {
        Some(events) => events.iter().map(|e| to_sse(e)).collect(),
        None => vec![resync(feed.last_id())],
    };
    // `ready` first, so a client knows the subscription is live before it acts.
    let ready = SseEvent::default().event("ready").data(format!("{{\"last_id\":{}}}", feed.last_id()));
    let closed = feed.closed();
    let live = st.live.clone();
    let tail = BroadcastStream::new(rx).map(move |r| match r {
        Ok(e) => to_sse(&e),
        // The client could not keep up and events were dropped for it.
        Err(_) => resync(live.feed.last_id()),
    });
    let stream = futures::stream::iter(std::iter::once(ready).chain(head))
        .chain(tail)
        .take_until(closed)
        .map(Ok::<_, Infallible>);
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
