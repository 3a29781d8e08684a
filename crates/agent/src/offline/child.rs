//! Running a helper program (espeak-ng) on tenant text: the text goes to its stdin, written
//! beside the read so a long text cannot fill both pipes and stall, and the program is killed
//! if it misses its deadline (`kill_on_drop` on the caller's command).

use std::process::Output;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// Why a helper program gave no output.
pub(crate) enum ChildError {
    Spawn(std::io::Error),
    NoStdin,
    Deadline,
    Wait(std::io::Error),
}

/// Runs `command` (stdin and stdout piped by the caller) with `input` on stdin.
pub(crate) async fn run_with_input(command: &mut Command, input: Vec<u8>, deadline: Duration) -> Result<Output, ChildError> {
    let mut child = command.spawn().map_err(ChildError::Spawn)?;
    let mut stdin = child.stdin.take().ok_or(ChildError::NoStdin)?;
    let feed = async move {
        let _ = stdin.write_all(&input).await;
        drop(stdin);
    };
    let run = async { tokio::join!(child.wait_with_output(), feed).0 };
    tokio::time::timeout(deadline, run).await.map_err(|_| ChildError::Deadline)?.map_err(ChildError::Wait)
}
