//! One line for an error and its causes, for messages people read.

/// The error and each of its causes, joined with ": ". The causes say what happened: reqwest's
/// "error sending request" or kube's "ServiceError" only become useful with "Connection refused"
/// after them. A cause whose message the text already holds is not repeated: a wrapper often ends
/// with its cause's message, and some (`ClusterError`) keep a cause's whole chain in theirs.
pub fn error_chain(error: &dyn std::error::Error) -> String {
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

    #[derive(Debug, thiserror::Error)]
    #[error("error sending request")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn joins_causes_once() {
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused",
        ));
        assert_eq!(error_chain(&e), "error sending request: Connection refused");
    }
}
