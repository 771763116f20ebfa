//! HLS packaging: the cutting policy, playlist text, the in-memory store and the packager that
//! runs them for one rendition.

pub mod packager;
pub mod playlist;
pub mod segmenter;
pub mod store;

/// The rendition name of an event's program output; no camera may take it.
pub const PROGRAM: &str = "program";
