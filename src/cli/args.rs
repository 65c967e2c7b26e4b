//! Argument groups shared by subcommands, so that a flag has one name, one parser and one
//! meaning wherever it appears. A subcommand flattens the group (`#[command(flatten)]`) and
//! may sharpen a flag's help with `mut_arg` where its use differs.

use std::time::Duration;

use clap::ValueEnum;

/// The Prometheus that answers the MetricTemplates' queries, for commands where the templates'
/// spec.provider.address may name it instead.
#[derive(clap::Args)]
pub struct Prometheus {
    /// Prometheus base URL, e.g. http://127.0.0.1:9090 (also accepted as --prometheus).
    // `--prometheus` is what `analyse` and `demo-controller` called it before; command lines
    // written for it keep working.
    #[arg(
        id = "prometheus_address",
        long = "prometheus-address",
        alias = "prometheus",
        value_name = "URL",
        value_parser = parse_base_url
    )]
    pub address: Option<String>,
    /// Timeout for each metrics query, in seconds (1 to 3600): the longest one query may take,
    /// connecting included. A provider that times out is not asked again in that interval.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub query_timeout: u64,
}

impl Prometheus {
    pub fn query_timeout(&self) -> Duration {
        Duration::from_secs(self.query_timeout.max(1))
    }
}

/// The Prometheus of a local demo run, which has no templates' address to fall back on.
#[derive(clap::Args)]
pub struct RequiredPrometheus {
    /// Prometheus base URL for the analysis (also accepted as --prometheus).
    // Not checked by `parse_base_url`, as it was not before the groups: only the demo's own
    // processes pass it.
    #[arg(
        id = "prometheus_address",
        long = "prometheus-address",
        alias = "prometheus",
        value_name = "URL"
    )]
    pub address: String,
}

/// How a command prints its result.
#[derive(clap::Args)]
pub struct Format {
    /// A table for people (text) or JSON for machines.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// A Prometheus base URL: http or https with a host. Checked when the command line is parsed,
/// so a typo is a usage error naming the flag, not a template that "cannot be rendered".
pub fn parse_base_url(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text)
        .map_err(|e| format!("{text:?} is not a URL ({e}); write it like http://127.0.0.1:9090"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(format!(
            "{text:?} is not an http(s) URL with a host; write it like http://127.0.0.1:9090"
        ));
    }
    Ok(text.to_string())
}
