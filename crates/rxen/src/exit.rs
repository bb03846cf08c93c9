//! Exit statuses of commands that run a domain: how it ended.

use std::process::ExitCode;

use domain::Ended;
use pv::domain::ShutdownReason;

/// The table printed in `--help` (a macro so `concat!` can use it).
macro_rules! exit_status_help {
    () => {
        "  0  the guest powered off\n\
         \x20 1  rxen failed: bad config, kernel or ramdisk, no KVM, ... (the message says what)\n\
         \x20 2  wrong command-line usage\n\
         \x20 3  the guest rebooted\n\
         \x20 4  the guest crashed (kernel panic, or rxen stopped it for misbehaving)\n\
         \x20 5  destroyed from the host: ^] on the console, or SIGINT, SIGTERM, SIGHUP\n\
         \x20 6  another shutdown reason: suspend, watchdog, soft_reset\n"
    };
}

/// The same table, for tests.
#[cfg_attr(not(test), allow(dead_code))]
pub const EXIT_STATUS_HELP: &str = exit_status_help!();

/// What a command's exit status says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    Poweroff = 0,
    Error = 1,
    // 2 is clap's usage error.
    Reboot = 3,
    Crash = 4,
    Destroyed = 5,
    Other = 6,
}

impl Status {
    pub fn of(ended: &Ended) -> Status {
        if ended.destroyed.is_some() {
            return Status::Destroyed;
        }
        match ended.reason {
            ShutdownReason::Poweroff => Status::Poweroff,
            ShutdownReason::Reboot => Status::Reboot,
            ShutdownReason::Crash(_) => Status::Crash,
            ShutdownReason::Destroyed => Status::Destroyed,
            ShutdownReason::Suspend | ShutdownReason::Watchdog | ShutdownReason::SoftReset => {
                Status::Other
            }
        }
    }

    pub fn code(self) -> ExitCode {
        ExitCode::from(self as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::Destroyed;

    fn ended(reason: ShutdownReason, destroyed: Option<Destroyed>) -> Ended {
        Ended {
            reason,
            destroyed,
            elapsed: Default::default(),
            stats: Default::default(),
        }
    }

    #[test]
    fn each_ending_has_its_status() {
        let s = |r, d| Status::of(&ended(r, d)) as u8;
        assert_eq!(s(ShutdownReason::Poweroff, None), 0);
        assert_eq!(s(ShutdownReason::Reboot, None), 3);
        assert_eq!(s(ShutdownReason::Crash("panic".into()), None), 4);
        assert_eq!(s(ShutdownReason::Watchdog, None), 6);
        assert_eq!(s(ShutdownReason::Suspend, None), 6);
        assert_eq!(s(ShutdownReason::Destroyed, Some(Destroyed::Escape)), 5);
        assert_eq!(
            s(ShutdownReason::Poweroff, Some(Destroyed::Signal("SIGTERM"))),
            5
        );
    }

    #[test]
    fn the_help_table_matches_the_codes() {
        for (code, word) in [
            (0, "powered off"),
            (3, "rebooted"),
            (4, "crashed"),
            (5, "destroyed"),
        ] {
            let line = EXIT_STATUS_HELP
                .lines()
                .find(|l| l.trim_start().starts_with(&code.to_string()))
                .unwrap();
            assert!(line.contains(word), "{line}");
        }
    }
}
