//! The instance metadata domain: supported versions, the field registry, a VM's checked
//! document, per-version shaping and rendering. Pure: no IO, no HTTP.

pub mod document;
pub mod json_path;
pub mod loadbalancer;
pub mod node;
pub mod render;
pub(crate) mod schema;
pub mod shape;
pub mod version;
