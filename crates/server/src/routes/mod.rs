pub mod events;
pub mod mon;
pub mod tokens;
