//! The change log (`changes`): one row per committed change, written in the same transaction as
//! the rows it describes, so the log and the tables can never disagree. Its sequence numbers are
//! the spine of everything live: the index, the tile cache and the sensor engine of every process
//! follow it, and the SSE feed's event ids are its sequence numbers.
//!
//! Sequence numbers are dense and commit-ordered: a change takes `max(seq) + 1` while holding the
//! log's write turn until its commit (SQLite's single writer; on PostgreSQL a transaction-level
//! advisory lock). So a follower that has read `seq = n` has seen every change below `n` that
//! will ever exist, and a hole in the numbers can only mean pruned history.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::StoreError;
use crate::model::{Collection, Reading};

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A record was inserted or replaced: reload it by `key`.
    Upsert,
    /// A record was deleted.
    Remove,
    /// `onemap import` wrote many records at once: `key` is the import's number, whose rows
    /// `import_keys` lists.
    Import,
    /// A batch of sensor readings: `data.readings` holds the latest new reading of each sensor
    /// that got one (not a row per reading: ingest runs at 50,000 readings a second).
    Readings,
    /// A batch of staff positions: `data.positions` holds the latest position of each member
    /// in it, `data.on_duty` those who came on duty with it (the tracks hold every position).
    Positions,
    /// Records whose look changed with time alone (a deadline light, a sensor gone quiet): the
    /// data says what changed; no table row did.
    Touch,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Upsert => "upsert",
            Op::Remove => "remove",
            Op::Import => "import",
            Op::Readings => "readings",
            Op::Positions => "positions",
            Op::Touch => "touch",
        }
    }

    pub fn parse(s: &str) -> Option<Op> {
        [Op::Upsert, Op::Remove, Op::Import, Op::Readings, Op::Positions, Op::Touch]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// One change as the committing code describes it; the store gives it its sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRow {
    pub collection: Collection,
    /// The record's feature id (code or case id); for an import, its number.
    pub key: Option<String>,
    pub op: Op,
    /// The domain event this change announces on the live feed (`case.created`, ...), if any.
    pub event: Option<String>,
    /// The event's payload, or what a touch or readings change carries.
    pub data: Option<Value>,
    /// Extra areas whose tiles the change redraws, beyond the envelopes of the record before and
    /// after (an import's extent, the cases a light sweep turned).
    pub bbox: Vec<[f64; 4]>,
}

impl ChangeRow {
    /// A change of one record, announced as `event` with `data`.
    pub fn record(
        collection: Collection,
        key: impl Into<String>,
        op: Op,
        event: Option<&str>,
        data: Option<Value>,
    ) -> Self {
        ChangeRow { collection, key: Some(key.into()), op, event: event.map(Into::into), data, bbox: Vec::new() }
    }

    /// Names the record the store just numbered (a new case or alarm): its key, and `id` in the
    /// payload the committing code could not know yet.
    pub fn with_id(mut self, id: i64) -> Self {
        self.key = Some(id.to_string());
        if let Some(Value::Object(m)) = &mut self.data {
            m.insert("id".into(), id.into());
        }
        self
    }
}

/// A change as read back from the log.
#[derive(Debug, Clone, PartialEq)]
pub struct Logged {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub row: ChangeRow,
}

pub(crate) const BOUNDS_SQL: &str = "SELECT COALESCE(min(seq), 0), COALESCE(max(seq), 0) FROM changes";
pub(crate) const AFTER_SQL: &str = "SELECT seq, at_ms, collection, key, op, event, data, bbox FROM changes \
     WHERE seq > $1 ORDER BY seq LIMIT $2";
/// Keeps the newest row whatever its age, so the head survives a quiet week.
pub(crate) const PRUNE_SQL: &str = "DELETE FROM changes WHERE at_ms < $1 AND seq < (SELECT max(seq) FROM changes)";
/// Numbers and inserts a chunk of rows in one statement (one round trip under the log's lock):
/// the head is read by the statement itself, which on PostgreSQL starts after the lock was
/// granted, so it sees every change committed before. The rows follow as `VALUES`.
pub(crate) const INSERT_SQL: &str = "WITH v (ord, at_ms, collection, key, op, event, data, bbox) AS (";
pub(crate) const INSERT_TAIL: &str = ") INSERT INTO changes (seq, at_ms, collection, key, op, event, data, bbox) \
     SELECT (SELECT COALESCE(max(seq), 0) FROM changes) + ord, at_ms, collection, key, op, event, data, bbox FROM v \
     RETURNING seq";

/// One stored row of [`AFTER_SQL`].
pub(crate) type RawRow = (i64, i64, String, Option<String>, String, Option<String>, Option<String>, Option<String>);

/// A stored row back to a change.
pub(crate) fn from_raw(r: RawRow) -> Result<Logged, StoreError> {
    let bad = |column: &'static str, detail: String| StoreError::Value { table: "changes", column, detail };
    let (seq, at_ms, collection, key, op, event, data, bbox) = r;
    let json = |column: &'static str, s: Option<String>| -> Result<Option<Value>, StoreError> {
        s.map(|s| serde_json::from_str(&s).map_err(|e| bad(column, e.to_string()))).transpose()
    };
    let bbox: Vec<[f64; 4]> = match json("bbox", bbox)? {
        None => Vec::new(),
        Some(v) => serde_json::from_value(v).map_err(|e| bad("bbox", e.to_string()))?,
    };
    Ok(Logged {
        seq,
        at: DateTime::from_timestamp_millis(at_ms).ok_or_else(|| bad("at_ms", at_ms.to_string()))?,
        row: ChangeRow {
            collection: Collection::parse(&collection).ok_or_else(|| bad("collection", collection.clone()))?,
            key,
            op: Op::parse(&op).ok_or_else(|| bad("op", op.clone()))?,
            event,
            data: json("data", data)?,
            bbox,
        },
    })
}

/// The text columns of a change row, in [`INSERT_SQL`] order after `seq` and `at_ms`.
pub(crate) fn to_raw(row: &ChangeRow) -> [Option<String>; 6] {
    [
        Some(row.collection.as_str().to_string()),
        row.key.clone(),
        Some(row.op.as_str().to_string()),
        row.event.clone(),
        row.data.as_ref().map(Value::to_string),
        (!row.bbox.is_empty()).then(|| serde_json::to_string(&row.bbox).expect("numbers serialise")),
    ]
}

/// The PostgreSQL channel a commit notifies with its last sequence number. Only a hint that
/// wakes the other processes' followers at once (they read the log, which is the truth, and poll
/// it anyway); a notification is delivered at commit, never for a rolled-back write.
pub const CHANNEL: &str = "onemap_changes";
/// PostgreSQL's turn at the log: a transaction-level advisory lock held to the commit (the key
/// spells "onemaplg").
pub(crate) const PG_LOCK: &str = "SELECT pg_advisory_xact_lock(8029466706108771431)";
pub(crate) const PG_NOTIFY: &str = "SELECT pg_notify('onemap_changes', $1::text)";

/// Numbers and inserts `rows` inside the open transaction `$tx` (a `&mut` connection); on
/// PostgreSQL (`$pg`) it first takes the log's lock and last notifies the followers. Evaluates
/// to their sequence numbers. A macro because the two stores' connections are different types.
macro_rules! append {
    ($tx:expr, $db:ty, $rows:expr, $pg:expr) => {{
        let rows: &[crate::store::log::ChangeRow] = $rows;
        let mut seqs: Vec<i64> = Vec::with_capacity(rows.len());
        if !rows.is_empty() {
            if $pg {
                sqlx::query(crate::store::log::PG_LOCK).execute(&mut *$tx).await?;
            }
            let at = chrono::Utc::now().timestamp_millis();
            let raws: Vec<[Option<String>; 6]> = rows.iter().map(crate::store::log::to_raw).collect();
            // 8 parameters a row: 2,000 rows stay far below either database's limit.
            for chunk in raws.chunks(2_000) {
                let mut qb = sqlx::QueryBuilder::<$db>::new(crate::store::log::INSERT_SQL);
                qb.push_values(chunk.iter().enumerate(), |mut b, (i, raw)| {
                    b.push_bind(i as i64 + 1).push_bind(at);
                    for v in raw {
                        b.push_bind(v.clone());
                    }
                });
                qb.push(crate::store::log::INSERT_TAIL);
                let mut got: Vec<i64> = qb.build_query_scalar().fetch_all(&mut *$tx).await?;
                got.sort_unstable();
                seqs.extend(got);
            }
            if $pg && let Some(last) = seqs.last() {
                sqlx::query(crate::store::log::PG_NOTIFY).bind(last.to_string()).execute(&mut *$tx).await?;
            }
        }
        seqs
    }};
}
pub(crate) use append;

/// The change of a readings batch: the latest newly stored reading of each sensor, as
/// `[code, epoch ms, value]`. None when nothing new was stored.
pub fn readings_change(readings: &[Reading], new: &[bool]) -> Option<ChangeRow> {
    let mut latest: hashbrown::HashMap<&str, &Reading> = hashbrown::HashMap::new();
    for (r, _) in readings.iter().zip(new).filter(|(_, n)| **n) {
        let e = latest.entry(r.sensor.as_str()).or_insert(r);
        if r.at > e.at {
            *e = r;
        }
    }
    if latest.is_empty() {
        return None;
    }
    let mut list: Vec<&Reading> = latest.into_values().collect();
    list.sort_by(|a, b| a.sensor.cmp(&b.sensor));
    let readings: Vec<Value> =
        list.iter().map(|r| serde_json::json!([r.sensor, r.at.timestamp_millis(), r.value])).collect();
    Some(ChangeRow {
        collection: Collection::Sensors,
        key: None,
        op: Op::Readings,
        event: None,
        data: Some(serde_json::json!({ "readings": readings })),
        bbox: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_survives_its_stored_form() {
        let row = ChangeRow {
            collection: Collection::Cases,
            key: Some("7".into()),
            op: Op::Upsert,
            event: Some("case.created".into()),
            data: Some(serde_json::json!({"id": 0, "status": "reported"})),
            bbox: vec![[1.0, 2.0, 3.0, 4.0]],
        }
        .with_id(7);
        let [c, k, o, e, d, b] = to_raw(&row);
        let back = from_raw((9, 1_700_000_000_000, c.unwrap(), k, o.unwrap(), e, d, b)).unwrap();
        assert_eq!(back.seq, 9);
        assert_eq!(back.row, row);
        assert_eq!(back.row.data.unwrap()["id"], 7);
    }

    #[test]
    fn a_readings_batch_names_each_sensor_once_with_its_latest_new_value() {
        let t = |s: i64| DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap();
        let r = |s: &str, at: i64, v: f64| Reading { sensor: s.into(), at: t(at), value: v };
        let batch = [r("B", 1, 1.0), r("A", 5, 2.0), r("A", 9, 3.0), r("A", 10, 4.0), r("C", 1, 5.0)];
        let change = readings_change(&batch, &[true, true, true, false, false]).unwrap();
        let data = change.data.unwrap();
        let list = data["readings"].as_array().unwrap();
        assert_eq!(list.len(), 2, "C stored nothing new");
        assert_eq!(list[0], serde_json::json!(["A", t(9).timestamp_millis(), 3.0]), "A's newest new reading");
        assert_eq!(list[1][0], "B");
        assert!(readings_change(&batch, &[false; 5]).is_none());
    }
}
