//! [`TmpfsBroker`]: a broker whose data directory is a small tmpfs of its
//! own, so a test can fill its disk. Mounting needs root: without it the
//! test is skipped with a message. The broker is killed and the tmpfs
//! unmounted when it is dropped, also when the test fails.

use std::ops::{Deref, DerefMut};
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::Duration;

use super::broker::Broker;

pub struct TmpfsBroker {
    broker: Broker,
    mount: PathBuf,
}

impl TmpfsBroker {
    /// Mounts a tmpfs of `size_mib` MiB as the data directory of a new
    /// broker with `config`, and starts it. `None` (said on stderr) when
    /// tmpfs cannot be mounted here.
    pub fn start(size_mib: u32, config: &str) -> Option<TmpfsBroker> {
        let broker = Broker::unstarted_node(1, None, Some(config.to_string()));
        let mount = broker.data_dir();
        std::fs::create_dir_all(&mount).expect("create the data directory");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(&mount)
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                eprintln!(
                    "SKIPPED: cannot mount a tmpfs on {} ({}); this test needs root",
                    mount.display(),
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                return None;
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount ({e}); this test needs root");
                return None;
            }
        }
        // The guard exists before the start, so a start that fails unmounts.
        let mut t = TmpfsBroker { broker, mount };
        t.broker.start_no_wait();
        t.broker.wait_ready();
        Some(t)
    }

    /// Free bytes of the tmpfs now.
    pub fn free_bytes(&self) -> u64 {
        raftmq::resources::fs_space(&self.mount)
            .expect("statvfs of the tmpfs")
            .free
    }
}

impl Deref for TmpfsBroker {
    type Target = Broker;
    fn deref(&self) -> &Broker {
        &self.broker
    }
}

impl DerefMut for TmpfsBroker {
    fn deref_mut(&mut self) -> &mut Broker {
        &mut self.broker
    }
}

impl Drop for TmpfsBroker {
    fn drop(&mut self) {
        // The broker holds files on the tmpfs: it goes first.
        self.broker.kill9();
        for _ in 0..50 {
            let ok = Command::new("umount")
                .arg(&self.mount)
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        // Still busy after 5 s: detach it now, the kernel frees it later.
        let lazy = Command::new("umount").arg("-l").arg(&self.mount).status();
        if !lazy.is_ok_and(|s| s.success()) {
            eprintln!("cannot unmount the tmpfs at {}", self.mount.display());
        }
    }
}
