pub mod events;
pub mod mon;
pub mod notifications;
pub mod sinks;
pub mod stream;
pub mod tokens;
pub mod types;
pub mod ws;
