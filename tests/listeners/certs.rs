//! Test certificates made with the `openssl` command line in a temporary
//! directory: a CA, a server certificate for 127.0.0.1/localhost signed by
//! it, a client certificate (CN `device-1`) signed by it, and a client
//! certificate from another CA the broker does not trust.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::run_cmd;

pub struct Certs {
    pub dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = run_cmd(
        Command::new("openssl").current_dir(dir).args(args),
        Duration::from_secs(30),
    );
    assert!(out.success(), "openssl {args:?}: {}", out.stderr);
}

const EC: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];

/// A self-signed CA `name` (name.pem, name.key).
fn ca(dir: &Path, name: &str) {
    let (key, pem, subj) = (
        format!("{name}.key"),
        format!("{name}.pem"),
        format!("/CN={name}"),
    );
    let mut args = vec!["req", "-x509", "-nodes", "-days", "2"];
    args.extend(EC);
    args.extend(["-keyout", &key, "-out", &pem, "-subj", &subj]);
    openssl(dir, &args);
}

/// A certificate `name` with subject CN `cn` signed by CA `ca`, with the
/// extensions in `ext`.
fn leaf(dir: &Path, name: &str, cn: &str, ca: &str, ext: &str) {
    let (key, csr, pem) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
    );
    let extfile = format!("{name}.ext");
    std::fs::write(dir.join(&extfile), ext).expect("write ext");
    let subj = format!("/CN={cn}");
    let mut args = vec!["req", "-nodes"];
    args.extend(EC);
    args.extend(["-keyout", &key, "-out", &csr, "-subj", &subj]);
    openssl(dir, &args);
    let (ca_pem, ca_key) = (format!("{ca}.pem"), format!("{ca}.key"));
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "2",
            "-extfile",
            &extfile,
        ],
    );
}

const SERVER_EXT: &str = "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n";
const CLIENT_EXT: &str =
    "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n";

impl Certs {
    pub fn make() -> Certs {
        let dir = tempfile::Builder::new()
            .prefix("raftmq-certs-")
            .tempdir()
            .expect("tempdir");
        let d = dir.path();
        ca(d, "ca");
        ca(d, "rogue-ca");
        leaf(d, "server", "localhost", "ca", SERVER_EXT);
        leaf(d, "client", "device-1", "ca", CLIENT_EXT);
        leaf(d, "rogue", "device-1", "rogue-ca", CLIENT_EXT);
        Certs { dir }
    }

    /// A second server certificate from the same CA (for reload tests),
    /// with subject CN `cn`.
    pub fn another_server(&self, name: &str, cn: &str) {
        leaf(self.dir.path(), name, cn, "ca", SERVER_EXT);
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    pub fn p(&self, file: &str) -> String {
        self.path(file).display().to_string()
    }
}
