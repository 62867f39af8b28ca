//! Running a CI command as a child process for `run exec` and `job exec`:
//! its outcome and exit code, whatever becomes of the reporting.

use runplane_api::workflowrun::v1::RunStatus;
use tokio::signal::unix::{SignalKind, signal};

/// Runs `command` (program and arguments) to its end: its outcome, the
/// reason when it did not succeed, and the exit code to leave with.
pub(crate) async fn run(command: &[String]) -> anyhow::Result<(RunStatus, String, u8)> {
    // Ctrl-C reaches the command through the terminal; we stay alive to report
    // its outcome. SIGTERM (a CI cancelling the job) is passed on to it.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let (program, rest) = command
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("no command given"))?;
    let ended = match tokio::process::Command::new(program).args(rest).spawn() {
        Err(e) => {
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            (
                RunStatus::Error,
                format!("cannot start {program:?}: {e}"),
                code,
            )
        }
        Ok(mut child) => {
            let exit = loop {
                tokio::select! {
                    exit = child.wait() => break exit?,
                    _ = sigint.recv() => {}
                    _ = sigterm.recv() => {
                        if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
                            let _ = nix::sys::signal::kill(
                                nix::unistd::Pid::from_raw(pid),
                                nix::sys::signal::Signal::SIGTERM,
                            );
                        }
                    }
                }
            };
            outcome(exit)
        }
    };
    Ok(ended)
}

/// The run outcome, reason and exit code for a command's exit status.
fn outcome(exit: std::process::ExitStatus) -> (RunStatus, String, u8) {
    use std::os::unix::process::ExitStatusExt as _;
    if let Some(code) = exit.code() {
        let byte = u8::try_from(code & 0xff).unwrap_or(1);
        if code == 0 {
            (RunStatus::Success, String::new(), 0)
        } else {
            (RunStatus::Error, format!("exit code {code}"), byte)
        }
    } else {
        let signal = exit.signal().unwrap_or(0);
        let code = u8::try_from(128 + signal).unwrap_or(255);
        // Interrupted or terminated: the job was cancelled rather than failing.
        if signal == 2 || signal == 15 {
            (
                RunStatus::Canceled,
                format!("terminated by signal {signal}"),
                code,
            )
        } else {
            (RunStatus::Error, format!("killed by signal {signal}"), code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt as _;

    #[test]
    fn exit_statuses_map_to_outcomes_and_codes() {
        let (s, _, c) = outcome(std::process::ExitStatus::from_raw(0));
        assert_eq!((s, c), (RunStatus::Success, 0));
        let (s, r, c) = outcome(std::process::ExitStatus::from_raw(3 << 8));
        assert_eq!((s, r.as_str(), c), (RunStatus::Error, "exit code 3", 3));
        let (s, _, c) = outcome(std::process::ExitStatus::from_raw(15));
        assert_eq!((s, c), (RunStatus::Canceled, 143));
        let (s, _, c) = outcome(std::process::ExitStatus::from_raw(9));
        assert_eq!((s, c), (RunStatus::Error, 137));
    }
}
