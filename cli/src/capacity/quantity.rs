//! Kubernetes resource quantities (`500m`, `2`, `0.5`, `256Mi`, `1G`) as whole millicores
//! and bytes, rounded up as the scheduler does.

use serde_json::Value;

/// The text of a quantity given as a YAML string or number.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Splits `256Mi` into 256 and its multiplier.
fn scaled(s: &str) -> Option<(f64, f64)> {
    const SUFFIXES: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("m", 1e-3),
    ];
    let (number, factor) = SUFFIXES
        .iter()
        .find_map(|(suffix, factor)| s.strip_suffix(suffix).map(|n| (n, *factor)))
        .unwrap_or((s, 1.0));
    let value: f64 = number.parse().ok()?;
    (value.is_finite() && value >= 0.0).then_some((value, factor))
}

/// Millicores of a CPU quantity.
pub fn cpu_millis(value: &Value) -> Option<u64> {
    let (v, factor) = scaled(&text(value)?)?;
    Some((v * factor * 1000.0 - 1e-9).ceil().max(0.0) as u64)
}

/// Bytes of a memory quantity.
pub fn bytes(value: &Value) -> Option<u64> {
    let (v, factor) = scaled(&text(value)?)?;
    Some((v * factor).ceil() as u64)
}

/// `1930m` or `2`.
pub fn show_cpu(millis: u64) -> String {
    format!("{millis}m")
}

/// `6742Mi`: memory in MiB, rounded down.
pub fn show_memory(bytes: u64) -> String {
    format!("{}Mi", bytes / (1024 * 1024))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_the_forms_manifests_use() {
        assert_eq!(cpu_millis(&json!("500m")), Some(500));
        assert_eq!(cpu_millis(&json!("2")), Some(2000));
        assert_eq!(cpu_millis(&json!(1)), Some(1000));
        assert_eq!(cpu_millis(&json!("0.25")), Some(250));
        assert_eq!(cpu_millis(&json!("0.0001")), Some(1));
        assert_eq!(bytes(&json!("256Mi")), Some(256 << 20));
        assert_eq!(bytes(&json!("1Gi")), Some(1 << 30));
        assert_eq!(bytes(&json!("1G")), Some(1_000_000_000));
        assert_eq!(bytes(&json!(1024)), Some(1024));
        assert_eq!(cpu_millis(&json!("lots")), None);
        assert_eq!(bytes(&json!(["1Gi"])), None);
        assert_eq!(show_memory(3 << 30), "3072Mi");
    }
}
