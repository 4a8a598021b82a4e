//! Names no other test uses.

/// `label` followed by ten characters of a fresh UUID v7, so tests running at once never
/// share a stream, a key prefix or a service.
pub fn unique(label: &str) -> String {
    let id = uuid::Uuid::now_v7().simple().to_string();
    format!("{label}{}", &id[id.len() - 10..])
}
