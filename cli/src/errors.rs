//! Errors as one line of text for messages.

/// An error and its causes on one line: "dispatch failure" or "connection refused" is
/// usually a few levels down. A cause whose text the line already holds is not repeated
/// (some errors print their source in their own message).
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);

    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn every_cause_once() {
        let inner = E("connection refused", None);
        let middle = E(
            "client error (connect): connection refused",
            Some(Box::new(inner)),
        );
        let outer = E("dispatch failure", Some(Box::new(middle)));
        assert_eq!(
            chain(&outer),
            "dispatch failure: client error (connect): connection refused"
        );
    }
}
