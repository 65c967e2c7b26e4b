//! The process's exit code, one type for every subcommand. The numbers are an interface: the
//! README documents them, scripts and CI branch on them and the tests assert them, so a code
//! keeps its number even where two meanings share it.

use std::fmt::Display;
use std::process::ExitCode;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit(u8);

impl Exit {
    pub const SUCCESS: Exit = Exit(0);
    /// A release (or its replay) was promoted.
    pub const PROMOTE: Exit = Exit(0);
    /// A failure that none of the codes below names.
    pub const FAILURE: Exit = Exit(1);
    /// A release (or its replay) was rolled back; also `bench --check` when a claim fails.
    pub const ROLLBACK: Exit = Exit(1);
    /// No verdict: the window or the run ended first.
    pub const INCONCLUSIVE: Exit = Exit(2);
    /// `import`: the output was produced, but something could not be mapped.
    pub const PARTIAL: Exit = Exit(2);
    /// `kubectl sluice status` and `watch`: a release is still under way (or the controller has
    /// not caught up with the spec yet).
    pub const IN_PROGRESS: Exit = Exit(3);
    /// A bad command line (sysexits' EX_USAGE, as the codes below follow sysexits).
    pub const USAGE: Exit = Exit(64);
    /// An invalid Canary, MetricTemplate or Secret.
    pub const INVALID_INPUT: Exit = Exit(65);
    /// A file that cannot be read (or written).
    pub const NO_INPUT: Exit = Exit(66);
    /// `kubectl sluice`: the Canary named does not exist (sysexits' EX_NOUSER, "addressee
    /// unknown", the nearest).
    pub const NOT_FOUND: Exit = Exit(67);
    /// Prometheus or the cluster cannot be reached, or a prerequisite is missing.
    pub const UNREACHABLE: Exit = Exit(69);
    /// Prometheus refused or failed a query.
    pub const QUERY_FAILED: Exit = Exit(70);
    /// A failure of the demo that none of the codes above names.
    pub const DEMO_FAILED: Exit = Exit(70);
    /// Stopped by Ctrl-C before the end (128 + SIGINT, as shells report it).
    pub const INTERRUPTED: Exit = Exit(130);

    /// A code the demo crate computed itself (`DemoError::exit_code`, `view::exit_code`), with
    /// the same numbers as the constants above.
    pub const fn from_code(code: u8) -> Exit {
        Exit(code)
    }

    /// Prints `error: MESSAGE` on stderr, as every subcommand reports a failure, and returns
    /// this code.
    pub fn fail(self, message: impl Display) -> Exit {
        eprintln!("error: {message}");
        self
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.0)
    }
}
