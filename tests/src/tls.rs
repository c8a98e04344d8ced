//! Certificates the tests generate: a CA, a server certificate for 127.0.0.1 and a client
//! certificate it signed (the TLS registry variant), and a self-signed signing certificate (the
//! token issuer's JWT key).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

/// A CA plus one server certificate it signed for `127.0.0.1` and `localhost`, written as PEM
/// files into a directory.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The CA certificate; clients trust this.
    pub ca_pem: PathBuf,
    /// The server certificate (leaf only).
    pub cert_pem: PathBuf,
    /// The server's private key (PKCS#8).
    pub key_pem: PathBuf,
    /// A client certificate the CA signed, and its key, in a directory laid out as docker's
    /// `certs.d/HOST` (`ca.crt`, `client.cert`, `client.key`), for registries that require one.
    pub client_cert_dir: PathBuf,
}

impl ServerTls {
    /// Generate a fresh CA and server certificate and write them into `dir`.
    pub fn generate(dir: &Path) -> ServerTls {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())
            .expect("no subject alt names cannot be invalid");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "regmirror test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        set_validity(&mut ca_params);
        let ca_key = KeyPair::generate().expect("generating a P-256 key");
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-signing the CA");
        let issuer = Issuer::new(ca_params, ca_key);

        let (cert, key) = leaf(
            vec!["127.0.0.1".to_owned(), "localhost".into()],
            "127.0.0.1",
            ExtendedKeyUsagePurpose::ServerAuth,
            &issuer,
        );
        let (client_cert, client_key) = leaf(
            Vec::new(),
            "regmirror test client",
            ExtendedKeyUsagePurpose::ClientAuth,
            &issuer,
        );

        let tls = ServerTls {
            ca_pem: dir.join("ca.pem"),
            cert_pem: dir.join("server.pem"),
            key_pem: dir.join("server-key.pem"),
            client_cert_dir: dir.join("client-certs.d"),
        };
        write(&tls.ca_pem, &ca_cert.pem());
        write(&tls.cert_pem, &cert.pem());
        write(&tls.key_pem, &key.serialize_pem());
        std::fs::create_dir_all(&tls.client_cert_dir).expect("creating the client cert dir");
        write(&tls.client_cert_dir.join("ca.crt"), &ca_cert.pem());
        write(&tls.client_cert_dir.join("client.cert"), &client_cert.pem());
        write(
            &tls.client_cert_dir.join("client.key"),
            &client_key.serialize_pem(),
        );
        tls
    }
}

/// A self-signed certificate and its key, used to sign JWTs: distribution's token auth trusts
/// tokens whose `x5c` chain ends in a certificate of its `rootcertbundle`. `Debug` leaves the
/// key out.
pub struct SigningCert {
    /// The certificate in DER (goes base64-encoded into the JWT `x5c` header).
    pub der: Vec<u8>,
    /// The certificate as PEM, written to `path` for the registry's `rootcertbundle`.
    pub path: PathBuf,
    /// The private key as PKCS#8 PEM.
    pub key_pem: String,
}

impl std::fmt::Debug for SigningCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningCert")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SigningCert {
    /// Generate a P-256 key and a self-signed certificate and write the certificate into `dir`.
    pub fn generate(dir: &Path) -> SigningCert {
        let mut params = CertificateParams::new(Vec::<String>::new())
            .expect("no subject alt names cannot be invalid");
        params
            .distinguished_name
            .push(DnType::CommonName, "regmirror test token issuer");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        set_validity(&mut params);
        let key = KeyPair::generate().expect("generating a P-256 key");
        let cert = params
            .self_signed(&key)
            .expect("self-signing the token certificate");
        let path = dir.join("token-root.pem");
        write(&path, &cert.pem());
        SigningCert {
            der: cert.der().to_vec(),
            path,
            key_pem: key.serialize_pem(),
        }
    }
}

/// A certificate `issuer` signed for `names` (subject alt names) and `purpose`, and its key.
fn leaf(
    names: Vec<String>,
    common_name: &str,
    purpose: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'_, KeyPair>,
) -> (Certificate, KeyPair) {
    let mut params =
        CertificateParams::new(names).expect("127.0.0.1, localhost or none are valid names");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![purpose];
    set_validity(&mut params);
    let key = KeyPair::generate().expect("generating a P-256 key");
    let cert = params
        .signed_by(&key, issuer)
        .expect("signing a leaf certificate with the test CA");
    (cert, key)
}

fn set_validity(params: &mut CertificateParams) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(30);
}

fn write(path: &Path, contents: &str) {
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}
