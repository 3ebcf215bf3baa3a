//! onemap: the spatial heart of a city operation management platform (城市运行管理服务平台).
//! One binary keeps every spatial layer of a city in live in-memory R-trees over a durable store
//! and serves locate, OGC API Features and more from them.

pub mod analysis;
pub mod auth;
pub mod cases;
pub mod catalog;
pub mod config;
pub mod demo;
pub mod events;
pub mod export;
pub mod geo;
pub mod grids;
pub mod http;
pub mod index;
pub mod linkage;
pub mod media;
pub mod metrics;
pub mod model;
pub mod mqtt;
pub mod sensors;
pub mod server;
pub mod staff;
pub mod store;
pub mod tiles;

pub use http::{AppState, app};
