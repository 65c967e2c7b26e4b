//! Errors and log lines made readable for a terminal or a pod's log.

use std::io::Write;

/// An error for a terminal or a log: an HTML page in it (a proxy's or a web server's answer
/// where an API was expected) is replaced by a note saying so, instead of the raw page.
pub fn readable(message: &str) -> String {
    let lower = message.to_ascii_lowercase();
    let mut text = match ["<!doctype", "<html", "<head", "<body"]
        .iter()
        .filter_map(|tag| lower.find(tag))
        .min()
    {
        Some(at) => {
            let end = lower
                .rfind("</html>")
                .map_or(message.len(), |i| i + "</html>".len());
            format!(
                "{}(an HTML page: the server is a web server or a proxy, not the API expected; check the URL){}",
                &message[..at],
                &message[end.max(at)..]
            )
        }
        None => message.to_string(),
    };
    // kube's words when an answer is not JSON, e.g. an HTML page or a plain-text error.
    if text.contains("Error deserializing response") && !text.contains("HTML page") {
        text.push_str(
            " (the server's answer is not a Kubernetes API's JSON: check the kubeconfig's server URL)",
        );
    }
    text
}

/// Log lines pass through `readable` on their way to stderr: kube's client logs a whole answer
/// at warn when it is not JSON, which for a web server is a page of HTML.
pub struct ReadableStderr;

impl Write for ReadableStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(readable(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
