pub mod events;
pub mod mon;
pub mod stream;
pub mod tokens;
pub mod ws;
