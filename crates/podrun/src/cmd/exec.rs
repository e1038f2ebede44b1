//! `podrun exec POD [-c CONTAINER] [-i] [-t] -- COMMAND [ARG…]`: a command in a running
//! container, as `kubectl exec` runs it, started by this process from the state directory
//! (the container instance's exec spec the node recorded, see
//! `podrun_node::runtime::exec`) whichever podrun runs the pod. It says what kubectl says:
//! the container it defaulted to, `container x is not valid for pod p out of: …`,
//! `unable to upgrade connection: container not found ("x")` for a container that is not
//! running, `command terminated with exit code N`, and exits as kubectl does (the
//! command's code, or 1).

use std::io::IsTerminal;
use std::os::fd::AsFd;

use k8s_openapi::api::core::v1::Pod;
use podrun_model::PodPhase;
use podrun_node::layout::Layout;
use podrun_node::objects::{ObjectKey, Resource, Store};
use podrun_node::runtime::ExecError;
use podrun_node::runtime::exec::{
    ExecSession, ExecStreams, RecordedContainer, TerminalSize, spec_file,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::Global;

/// Arguments of `podrun exec`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The pod.
    pub pod: String,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
    /// The container (default: the pod's default container).
    #[arg(short = 'c', long = "container")]
    pub container: Option<String>,
    /// Pass stdin to the command.
    #[arg(short = 'i', long)]
    pub stdin: bool,
    /// Give the command a terminal (with `-i` and a terminal on stdin).
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Namespace.
    #[arg(short = 'n', long = "namespace", default_value = "default")]
    pub namespace: String,
}

/// Runs the subcommand.
pub fn run(args: Args, global: &Global) -> anyhow::Result<u8> {
    let state = global.state_dir();
    let store = Store::open(&state)?;
    let key = ObjectKey::new(&args.namespace, &args.pod);
    let Some(pod) = store.get::<Pod>(Resource::PODS, &key)? else {
        eprintln!(
            "Error from server (NotFound): pods \"{}\" not found",
            args.pod
        );
        return Ok(1);
    };
    if let Some(phase) = PodPhase::of(&pod).filter(|p| p.is_terminal()) {
        eprintln!(
            "error: cannot exec into a container in a completed pod; current phase is {phase}"
        );
        return Ok(1);
    }
    let name = match choose_container(&pod, args.container.as_deref()) {
        Ok((name, note)) => {
            if let Some(note) = note {
                eprintln!("{note}");
            }
            name
        }
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(1);
        }
    };
    let restart_count = pod
        .status
        .iter()
        .flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
        })
        .find(|s| s.name == name)
        .map_or(0, |s| s.restart_count);
    let layout = Layout::new(&state);
    let dir = layout.pod_dir(
        &args.namespace,
        &args.pod,
        pod.metadata.uid.as_deref().unwrap_or_default(),
    );
    let not_found = || {
        eprintln!("error: unable to upgrade connection: container not found ({name:?})");
        Ok(1)
    };
    let Ok(container) =
        RecordedContainer::open(&spec_file(&layout.log_file(&dir, &name, restart_count)))
    else {
        return not_found();
    };
    // As kubectl: a terminal only for a terminal's input, and only with -i.
    let stdin_terminal = std::io::stdin().is_terminal();
    let tty = args.tty && args.stdin && stdin_terminal;
    if args.tty && args.stdin && !stdin_terminal {
        eprintln!("Unable to use a TTY - input is not a terminal or the right kind of file");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let streams = ExecStreams {
            stdin: args.stdin,
            stdout: true,
            stderr: true,
            tty,
        };
        let size = tty.then(terminal_size).flatten();
        match container.exec_session(&args.command, streams, size).await {
            Ok(session) => Ok(relay(session, tty).await),
            Err(e) => Err(e),
        }
    });
    // The stdin reader may be blocked in read(2): leave it to the process exit.
    runtime.shutdown_background();
    match result {
        Ok(Ok(0)) => Ok(0),
        Ok(Ok(code)) => {
            eprintln!("command terminated with exit code {code}");
            Ok(u8::try_from(code).unwrap_or(1))
        }
        Ok(Err(e)) => {
            eprintln!("error: {e}");
            Ok(1)
        }
        Err(ExecError::NotRunning) => not_found(),
        Err(e) => {
            eprintln!("error: Internal error occurred: error executing command in container: {e}");
            Ok(1)
        }
    }
}

/// The container to run in and the note kubectl prints about it, or kubectl's error.
fn choose_container(pod: &Pod, wanted: Option<&str>) -> Result<(String, Option<String>), String> {
    let spec = pod.spec.clone().unwrap_or_default();
    let init = spec.init_containers.unwrap_or_default();
    let all = || {
        spec.containers
            .iter()
            .map(|c| c.name.clone())
            .chain(init.iter().map(|c| format!("{} (init)", c.name)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    if let Some(name) = wanted {
        let known = spec
            .containers
            .iter()
            .chain(init.iter())
            .any(|c| c.name == name);
        if !known {
            return Err(format!(
                "container {name} is not valid for pod {pod_name} out of: {}",
                all()
            ));
        }
        return Ok((name.to_owned(), None));
    }
    let annotated = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("kubectl.kubernetes.io/default-container"))
        .filter(|n| spec.containers.iter().any(|c| &c.name == *n));
    if let Some(name) = annotated {
        return Ok((name.clone(), None));
    }
    let first = spec
        .containers
        .first()
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let note = (spec.containers.len() + init.len() > 1)
        .then(|| format!("Defaulted container \"{first}\" out of: {}", all()));
    Ok((first, note))
}

/// This terminal's size, from stdout (else stdin).
fn terminal_size() -> Option<TerminalSize> {
    let size = |fd: std::os::fd::BorrowedFd<'_>| {
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ writes a winsize into our stack variable.
        let ok = unsafe {
            libc::ioctl(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                libc::TIOCGWINSZ,
                &mut ws,
            )
        } == 0;
        (ok && ws.ws_col > 0).then_some(TerminalSize {
            width: ws.ws_col,
            height: ws.ws_row,
        })
    };
    size(std::io::stdout().as_fd()).or_else(|| size(std::io::stdin().as_fd()))
}

/// This terminal in raw mode while it lives, as kubectl puts it for `-t`; restored after.
struct RawTerminal(Option<nix::sys::termios::Termios>);

impl RawTerminal {
    fn enter() -> Self {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let Ok(saved) = tcgetattr(stdin.as_fd()) else {
            return Self(None);
        };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        if tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).is_err() {
            return Self(None);
        }
        Self(Some(saved))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin().as_fd(),
                nix::sys::termios::SetArg::TCSANOW,
                saved,
            );
        }
    }
}

/// Copies `from` to `to` until the end of `from`, flushing as it goes.
async fn copy(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n]).await?;
        to.flush().await?;
    }
}

/// Relays this process's streams to the command until it has ended and its output is
/// drained; its exit code.
async fn relay(mut session: ExecSession, tty: bool) -> std::io::Result<i32> {
    let raw = tty.then(RawTerminal::enter);
    if let Some(input) = session.stdin.take() {
        // Ends with our stdin (closing the command's) or with the process.
        tokio::spawn(async move {
            let mut input = input;
            let _ = copy(tokio::io::stdin(), &mut input).await;
            let _ = input.shutdown().await;
        });
    }
    let stdout = session.stdout.take();
    let stderr = session.stderr.take();
    let output = async {
        let out = async {
            if let Some(r) = stdout {
                copy(r, tokio::io::stdout()).await?;
            }
            Ok::<(), std::io::Error>(())
        };
        let err = async {
            if let Some(r) = stderr {
                copy(r, tokio::io::stderr()).await?;
            }
            Ok::<(), std::io::Error>(())
        };
        let (a, b) = tokio::join!(out, err);
        a.and(b)
    };
    let resizes = async {
        let Ok(mut winch) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        else {
            return std::future::pending().await;
        };
        while winch.recv().await.is_some() {
            if let Some(size) = terminal_size() {
                let _ = session.resize(size);
            }
        }
        std::future::pending::<()>().await
    };
    let run = async {
        let (exit, copied) = tokio::join!(session.wait(), output);
        copied.map(|()| exit.exit_code)
    };
    let code = if tty {
        tokio::select! {
            code = run => code,
            () = resizes => unreachable!("the resize loop never ends"),
        }
    } else {
        run.await
    };
    drop(raw);
    code
}
