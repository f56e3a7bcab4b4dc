//! The envelope: the full event's context fields, declared once.
//!
//! A full event is `id`, `type`, `payload`, then the context fields below in
//! CDS's wire order, then `timestamp`. The context fields are listed in one
//! table, [`with_context_fields!`], and everything that walks them — the
//! struct, its encoder ([`crate::event`]), the decoder's wire struct
//! ([`crate::decode`]), the key list [`ENVELOPE`] — is generated from it, so
//! a field added to CDS's `FullEventV2` is one line here.
//!
//! A field marked `always` is written even when empty (CDS does not omit
//! `user_mail` and `concurrency`); every other one is omitted when empty
//! (a `String`) or zero (an `i64`).

/// Calls `$m!` with the context fields, in wire order, each as
/// `name: Type` or `name: Type = always`.
macro_rules! with_context_fields {
    ($m:ident) => {
        $m! {
            project_key: String,
            purge_report_id: String,
            vcs_name: String,
            repository: String,
            repository_origin: String,
            workflow: String,
            workflow_run_id: String,
            run_job_id: String,
            run_number: i64,
            run_attempt: i64,
            region: String,
            hatchery: String,
            model_type: String,
            model_osarch: String,
            job_id: String,
            status: String,
            user_id: String,
            username: String,
            user_mail: String = always,
            run_result: String,
            entity: String,
            organization: String,
            permission: String,
            plugin: String,
            gpg_key: String,
            integration_model: String,
            integration: String,
            key_name: String,
            key_type: String,
            variable: String,
            notification: String,
            variable_set: String,
            item: String,
            concurrency: String = always,
        }
    };
}
pub(crate) use with_context_fields;

/// `true` for a field marked `always`, `false` otherwise.
macro_rules! is_always {
    () => {
        false
    };
    (always) => {
        true
    };
}
pub(crate) use is_always;

/// What a key of the full event holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// The event id.
    Id,
    /// The catalogue type.
    Type,
    /// Any JSON value, kept byte for byte; `null` when absent.
    Payload,
    /// A context string, omitted when empty unless `always`.
    Text,
    /// A context counter, omitted when zero.
    Count,
    /// An RFC 3339 time, written as Go writes it.
    Timestamp,
}

/// One key of the full event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvelopeField {
    pub name: &'static str,
    pub kind: FieldKind,
    /// Always present on the wire, even when empty.
    pub always: bool,
}

/// A context field's kind from its Rust type.
trait ContextKind {
    const KIND: FieldKind;
}
impl ContextKind for String {
    const KIND: FieldKind = FieldKind::Text;
}
impl ContextKind for i64 {
    const KIND: FieldKind = FieldKind::Count;
}

macro_rules! envelope_table {
    ($($field:ident : $ty:ty $(= $always:ident)?),* $(,)?) => {
        /// Every key of the full event, in wire order, with what it holds.
        pub const ENVELOPE: &[EnvelopeField] = &[
            EnvelopeField { name: "id", kind: FieldKind::Id, always: true },
            EnvelopeField { name: "type", kind: FieldKind::Type, always: true },
            EnvelopeField { name: "payload", kind: FieldKind::Payload, always: true },
            $(EnvelopeField {
                name: stringify!($field),
                kind: <$ty as ContextKind>::KIND,
                always: is_always!($($always)?),
            },)*
            EnvelopeField { name: "timestamp", kind: FieldKind::Timestamp, always: true },
        ];

        /// Every key of the full event, in wire order.
        pub const FULL_EVENT_KEYS: &[&str] = &[
            "id", "type", "payload", $(stringify!($field),)* "timestamp",
        ];
    };
}
with_context_fields!(envelope_table);

/// A context value the encoder may leave out.
pub(crate) trait ContextValue {
    fn is_empty_value(&self) -> bool;
}
impl ContextValue for String {
    fn is_empty_value(&self) -> bool {
        self.is_empty()
    }
}
impl ContextValue for i64 {
    fn is_empty_value(&self) -> bool {
        *self == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_and_the_key_list_agree() {
        let names: Vec<&str> = ENVELOPE.iter().map(|f| f.name).collect();
        assert_eq!(names, FULL_EVENT_KEYS);
        assert_eq!(FULL_EVENT_KEYS.len(), 38);
    }

    #[test]
    fn only_user_mail_and_concurrency_are_always_written_among_context_fields() {
        let always: Vec<&str> = ENVELOPE
            .iter()
            .filter(|f| matches!(f.kind, FieldKind::Text | FieldKind::Count) && f.always)
            .map(|f| f.name)
            .collect();
        assert_eq!(always, ["user_mail", "concurrency"]);
        let counts: Vec<&str> = ENVELOPE
            .iter()
            .filter(|f| f.kind == FieldKind::Count)
            .map(|f| f.name)
            .collect();
        assert_eq!(counts, ["run_number", "run_attempt"]);
    }
}
