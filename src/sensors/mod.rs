//! Sensors (运行监测, city lifelines): the alarm rules so far; the registry, readings ingest
//! (HTTP and MQTT) and alarm-to-case grow here.

pub mod rules;
