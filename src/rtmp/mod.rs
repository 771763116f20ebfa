//! RTMP: the chunk layer and messages (pure), the publishing session, the listener, and a client.

pub mod chunk;
pub mod client;
pub mod message;
pub mod server;
pub mod session;
