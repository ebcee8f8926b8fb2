//! A container runtime in trouble, for the agent: a unix socket in front
//! of the test containerd's (`kubelet::SOCKET`) that hangs (accepts and
//! never answers), answers slowly (every byte from containerd held back a
//! while) or flaps (forwards, then drops every connection, in turns). The
//! test's own kubelet talks to containerd directly: only the agent sees
//! the trouble.
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot, watch},
    time::Instant,
};

use super::kubelet::SOCKET;

#[derive(Clone, Copy, Debug)]
pub(crate) enum Trouble {
    /// Accepts connections and never answers.
    Hung,
    /// Answers, each byte this much late.
    Slow(Duration),
    /// Up (forwarding) for `up`, then down (every connection dropped,
    /// new ones closed at once) for `down`, and again.
    Flapping { up: Duration, down: Duration },
}

pub(crate) struct CriProxy {
    pub path: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CriProxy {
    pub(crate) fn start(trouble: Trouble) -> Self {
        let dir = std::env::temp_dir().join(format!("oom-tracer-cri-proxy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{trouble:?}.sock").replace([' ', '{', '}', ':', ','], ""));
        let _ = std::fs::remove_file(&path);
        let (stop, stopped) = oneshot::channel();
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let p = path.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = UnixListener::bind(&p).unwrap();
                ready_tx.send(()).unwrap();
                serve(listener, trouble, stopped).await;
            });
        });
        ready.recv().expect("the CRI proxy did not start");
        Self {
            path,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub(crate) fn socket(&self) -> &Path {
        &self.path
    }
}

impl Drop for CriProxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn serve(listener: UnixListener, trouble: Trouble, mut stopped: oneshot::Receiver<()>) {
    let (down_tx, down) = watch::channel(false);
    if let Trouble::Flapping { up, down } = trouble {
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(up).await;
                let _ = down_tx.send(true);
                tokio::time::sleep(down).await;
                let _ = down_tx.send(false);
            }
        });
    }
    let mut held = Vec::new();
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            r = listener.accept() => {
                let Ok((client, _)) = r else { return };
                match trouble {
                    Trouble::Hung => held.push(client),
                    Trouble::Slow(d) => {
                        tokio::spawn(forward(client, d, None));
                    }
                    Trouble::Flapping { .. } => {
                        if !*down.borrow() {
                            tokio::spawn(forward(client, Duration::ZERO, Some(down.clone())));
                        }
                    }
                }
            }
        }
    }
}

/// Copies between `client` and containerd, containerd's bytes `delay`
/// late, until either side closes or the runtime goes `down`.
async fn forward(client: UnixStream, delay: Duration, down: Option<watch::Receiver<bool>>) {
    let Ok(upstream) = UnixStream::connect(SOCKET).await else {
        return;
    };
    let (mut cr, mut cw) = client.into_split();
    let (mut ur, mut uw) = upstream.into_split();
    let to_runtime = tokio::io::copy(&mut cr, &mut uw);
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let read = async move {
        let mut buf = vec![0; 64 << 10];
        while let Ok(n) = ur.read(&mut buf).await {
            if n == 0
                || tx
                    .send((Instant::now() + delay, buf[..n].to_vec()))
                    .is_err()
            {
                break;
            }
        }
    };
    let write = async move {
        while let Some((at, bytes)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if cw.write_all(&bytes).await.is_err() {
                break;
            }
        }
    };
    let cut = async move {
        match down {
            Some(mut d) => {
                let _ = d.wait_for(|&is_down| is_down).await;
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = to_runtime => {}
        () = async { tokio::join!(read, write); } => {}
        () = cut => {}
    }
}
