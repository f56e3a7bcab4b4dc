pub mod events;
pub mod mon;
