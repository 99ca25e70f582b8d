//! Certificates for the TLS tests, made with the `openssl` command line: a
//! CA, a server certificate for the name `localhost` only, a client
//! certificate, and another CA that signed nothing the server shows.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A folder of certificates and keys, removed on drop.
pub struct Pki {
    dir: PathBuf,
}

const CA_CONFIG: &str = "[req]
distinguished_name = dn
x509_extensions = v3_ca
prompt = no
[dn]
CN = backchannel test CA NAME
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
";

impl Pki {
    /// `ca.crt`/`ca.key`, `other-ca.crt`, `server.crt`/`server.key` (for
    /// `localhost`), `client.crt`/`client.key` (CN `client_cn`, signed by `ca`).
    pub fn new(client_cn: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("bc-pki-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Pki { dir };
        for ca in ["ca", "other-ca"] {
            std::fs::write(pki.dir.join("ca.cnf"), CA_CONFIG.replace("NAME", ca)).unwrap();
            pki.openssl(&[
                "req",
                "-x509",
                "-new",
                "-nodes",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-days",
                "2",
                "-config",
                "ca.cnf",
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
            ]);
        }
        pki.leaf(
            "server",
            "localhost",
            "extendedKeyUsage = serverAuth\nsubjectAltName = DNS:localhost\n",
        );
        pki.leaf("client", client_cn, "extendedKeyUsage = clientAuth\n");
        pki
    }

    fn leaf(&self, name: &str, cn: &str, extensions: &str) {
        let ext = format!(
            "basicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\n\
             authorityKeyIdentifier = keyid\n{extensions}"
        );
        std::fs::write(self.dir.join(format!("{name}.ext")), ext).unwrap();
        self.openssl(&[
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.crt"),
        ]);
    }

    fn openssl(&self, args: &[&str]) {
        let status = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("the openssl command line is installed");
        assert!(status.success(), "openssl {args:?}");
    }

    /// The path of one of the files.
    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_owned()
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.join(name)).unwrap()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
