//! The flags every server command shares (`webhook serve`, `gallery`, `mcp
//! --http`): the limits of uncensored-deliver's serve loop, and the access
//! token of the two that may face a network. The library owns the limits,
//! their ranges and the token's rules; this only reads them off the command line.

use std::time::Duration;

use clap::Args;
use uncensored_deliver::serve::{AccessToken, AccessTokenError, ServerLimits};

use crate::failure::Failure;

/// Limits on the clients of a server.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Limits on clients")]
pub struct ServerFlags {
    /// Close a connection whose request headers take longer than this from their first byte [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = timeout)]
    pub header_timeout: Option<Duration>,
    /// Fail a request whose body goes silent for this long [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = timeout)]
    pub body_timeout: Option<Duration>,
    /// Answer 503 when a response has not begun this long after its request (a stream may then last) [default: 30s; for mcp, its longest tool wait + 30s].
    #[arg(long, value_name = "DURATION", value_parser = timeout)]
    pub request_timeout: Option<Duration>,
    /// Close a kept-alive connection that sends no request for this long [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = timeout)]
    pub idle_timeout: Option<Duration>,
    /// Close a connection whose client reads nothing of its response for this long [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = timeout)]
    pub write_timeout: Option<Duration>,
    /// Serve at most this many connections at once; more wait to be accepted [default: 256].
    #[arg(long, value_name = "N", value_parser = connections)]
    pub max_connections: Option<usize>,
    /// On Ctrl-C or SIGTERM, let requests in flight finish for this long [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = grace)]
    pub shutdown_grace: Option<Duration>,
}

impl ServerFlags {
    /// `base` (the server's defaults) with the limits these flags name.
    pub fn limits(&self, base: ServerLimits) -> ServerLimits {
        let mut limits = base;
        if let Some(timeout) = self.header_timeout {
            limits = limits.with_header_read_timeout(timeout);
        }
        if let Some(timeout) = self.body_timeout {
            limits = limits.with_body_timeout(timeout);
        }
        if let Some(timeout) = self.request_timeout {
            limits = limits.with_request_timeout(timeout);
        }
        if let Some(timeout) = self.idle_timeout {
            limits = limits.with_idle_timeout(timeout);
        }
        if let Some(timeout) = self.write_timeout {
            limits = limits.with_write_timeout(timeout);
        }
        if let Some(connections) = self.max_connections {
            limits = limits.with_max_connections(connections);
        }
        if let Some(grace) = self.shutdown_grace {
            limits = limits.with_shutdown_grace(grace);
        }
        limits
    }
}

/// A duration: a number of seconds (`1.5`) or one with a unit (`500ms`, `10s`, `2m`, `1h`).
fn duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let bad = || format!("{text:?} is not a duration (e.g. 500ms, 10s, 2m)");
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| bad())
}

fn timeout(text: &str) -> Result<Duration, String> {
    let value = duration(text)?;
    let (min, max) = (ServerLimits::MIN_TIMEOUT, ServerLimits::MAX_TIMEOUT);
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(format!("a timeout is {} to {}", shown(min), shown(max)))
    }
}

fn grace(text: &str) -> Result<Duration, String> {
    let value = duration(text)?;
    let max = ServerLimits::MAX_SHUTDOWN_GRACE;
    if value <= max {
        Ok(value)
    } else {
        Err(format!("the grace is at most {}", shown(max)))
    }
}

/// `webhook serve --recovery-grace`: a duration of at most a day.
pub fn recovery_grace(text: &str) -> Result<Duration, String> {
    let value = duration(text)?;
    let max = Duration::from_secs(24 * 3600);
    if value <= max {
        Ok(value)
    } else {
        Err(format!("the recovery grace is at most {}", shown(max)))
    }
}

fn connections(text: &str) -> Result<usize, String> {
    let max = ServerLimits::MAX_CONNECTIONS;
    match text.trim().parse::<usize>() {
        Ok(value) if (1..=max).contains(&value) => Ok(value),
        _ => Err(format!("a whole number from 1 to {max}")),
    }
}

/// A duration as the flags' help shows it: `100ms`, `10s`, `1h`.
fn shown(value: Duration) -> String {
    if value.subsec_nanos() != 0 {
        format!("{}ms", value.as_millis())
    } else if value.as_secs().is_multiple_of(3600) && value.as_secs() > 0 {
        format!("{}h", value.as_secs() / 3600)
    } else {
        format!("{}s", value.as_secs())
    }
}

/// An access token as given by a flag or a variable, checked when the
/// server starts: a clap error would repeat the value it refuses, and this
/// one is a secret. `Debug` never shows it.
#[derive(Clone)]
pub struct GivenToken(Result<AccessToken, AccessTokenError>);

impl std::fmt::Debug for GivenToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GivenToken(<redacted>)")
    }
}

impl GivenToken {
    /// The token, or what is wrong with it (never the token), naming `flag`.
    pub fn token(&self, flag: &str) -> Result<AccessToken, Failure> {
        self.0
            .clone()
            .map_err(|error| Failure::input(format!("{flag}: {error}")))
    }
}

/// Never fails (see [`GivenToken`]).
pub fn given_token(text: &str) -> Result<GivenToken, String> {
    Ok(GivenToken(AccessToken::new(text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "s", "ten", "1d", "-1", "1e400", "1..2s"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
        assert!(timeout("50ms").is_err());
        assert!(timeout("2h").is_err());
        assert_eq!(timeout("100ms"), Ok(ServerLimits::MIN_TIMEOUT));
        assert_eq!(grace("0"), Ok(Duration::ZERO));
        assert!(grace("11m").is_err());
        assert!(connections("0").is_err());
        assert_eq!(connections("65536"), Ok(65_536));
        assert!(connections("65537").is_err());
    }

    #[test]
    fn the_help_names_the_library_defaults() {
        use clap::CommandFactory as _;
        #[derive(clap::Parser)]
        struct Probe {
            #[command(flatten)]
            flags: ServerFlags,
        }
        let command = Probe::command();
        let defaults = ServerLimits::default();
        for (flag, value) in [
            ("header-timeout", shown(defaults.header_read_timeout())),
            ("body-timeout", shown(defaults.body_timeout())),
            ("request-timeout", shown(defaults.request_timeout())),
            ("idle-timeout", shown(defaults.idle_timeout())),
            ("write-timeout", shown(defaults.write_timeout())),
            ("max-connections", defaults.max_connections().to_string()),
            ("shutdown-grace", shown(defaults.shutdown_grace())),
        ] {
            let arg = command
                .get_arguments()
                .find(|a| a.get_long() == Some(flag))
                .unwrap();
            let help = arg.get_help().unwrap().to_string();
            assert!(
                help.contains(&format!("[default: {value}")),
                "{flag}: {help}"
            );
        }
        let none = ServerFlags::default();
        assert_eq!(none.limits(defaults.clone()), defaults);
    }

    #[test]
    fn a_given_token_is_never_shown() {
        let short = given_token("short-secret-value").unwrap();
        assert!(!format!("{short:?}").contains("short-secret"));
        let error = short.token("--token").unwrap_err();
        assert!(!error.message.contains("short-secret"), "{}", error.message);
        let good = given_token("0123456789abcdef0123456789abcdef").unwrap();
        assert!(!format!("{good:?}").contains("0123456789abcdef"));
    }
}
