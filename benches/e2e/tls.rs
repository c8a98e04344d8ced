//! How the registries are served: plain HTTP, or TLS with HTTP/2 off or on, under a throw-away
//! CA the harness makes for each run (the tools are given it as a `certs.d`-style directory).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde::Serialize;

/// The registries' transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain HTTP.
    Off,
    /// TLS, HTTP/2 disabled on the registry (`http.http2.disabled: true`): HTTP/1.1 only.
    H1,
    /// TLS, the registry's default: HTTP/2 offered by ALPN.
    H2,
}

impl TlsMode {
    pub fn name(self) -> &'static str {
        match self {
            TlsMode::Off => "http",
            TlsMode::H1 => "tls-h1",
            TlsMode::H2 => "tls-h2",
        }
    }

    pub fn is_tls(self) -> bool {
        self != TlsMode::Off
    }
}

/// A CA and a server certificate for 127.0.0.1 it signed, as PEM files in one directory.
#[derive(Debug, Clone)]
pub struct Certs {
    /// Holds `ca.crt` only: what `--src-cert-dir` / `--dest-cert-dir` are given.
    pub ca_dir: PathBuf,
    pub ca_pem: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl Certs {
    /// Generates a fresh CA and server certificate into `dir`.
    pub fn generate(dir: &Path) -> Result<Certs> {
        let ca_dir = dir.join("ca");
        std::fs::create_dir_all(&ca_dir)
            .with_context(|| format!("creating {}", ca_dir.display()))?;
        let now = time::OffsetDateTime::now_utc();
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "regmirror bench CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        ca_params.not_before = now - time::Duration::days(1);
        ca_params.not_after = now + time::Duration::days(7);
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".into()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, "127.0.0.1");
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(7);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;

        let certs = Certs {
            ca_pem: ca_cert.pem(),
            cert_path: dir.join("server.pem"),
            key_path: dir.join("server-key.pem"),
            ca_dir,
        };
        std::fs::write(certs.ca_dir.join("ca.crt"), &certs.ca_pem)?;
        std::fs::write(&certs.cert_path, cert.pem())?;
        std::fs::write(&certs.key_path, key.serialize_pem())?;
        Ok(certs)
    }
}

/// What a TLS connection's first server flight said, read by the proxy in cleartext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// A full handshake (certificate sent).
    Full,
    /// An abbreviated one: TLS 1.3 with a pre-shared key accepted, or TLS 1.2 with the
    /// client's session id echoed.
    Resumed,
}

/// The first handshake message of `client` and of `server` (the bytes each sent first on a
/// connection), if both are complete: whether the server resumed a session. `None` while more
/// bytes are needed or when the bytes are not a TLS handshake.
pub fn classify(client: &[u8], server: &[u8]) -> Option<Handshake> {
    let client_hello = handshake_message(client, 1)?;
    let server_hello = handshake_message(server, 2)?;
    let client_session = session_id(client_hello)?;
    // ServerHello: version (2), random (32), session id, cipher (2), compression (1), extensions.
    let server_session = session_id(server_hello)?;
    let rest = server_hello.get(2 + 32 + 1 + server_session.len() + 3..)?;
    let mut tls13 = false;
    let mut psk = false;
    if rest.len() >= 2 {
        let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
        let mut extensions = rest.get(2..2 + len)?;
        while extensions.len() >= 4 {
            let kind = u16::from_be_bytes([extensions[0], extensions[1]]);
            let len = u16::from_be_bytes([extensions[2], extensions[3]]) as usize;
            match kind {
                41 => psk = true,
                43 => tls13 = true,
                _ => {}
            }
            extensions = extensions.get(4 + len..)?;
        }
    }
    let resumed = if tls13 {
        psk
    } else {
        !client_session.is_empty() && client_session == server_session
    };
    Some(if resumed {
        Handshake::Resumed
    } else {
        Handshake::Full
    })
}

/// The body of the first handshake message in a stream of TLS records, if it is of `kind`
/// (1 ClientHello, 2 ServerHello) and its first record holds it whole (hellos fit one record).
fn handshake_message(stream: &[u8], kind: u8) -> Option<&[u8]> {
    // Record: type 22 (handshake), version (2), length (2); then type (1), length (3), body.
    if stream.len() < 9 || stream[0] != 22 || stream[5] != kind {
        return None;
    }
    let record_len = u16::from_be_bytes([stream[3], stream[4]]) as usize;
    let record = stream.get(5..5 + record_len)?;
    let len = u32::from_be_bytes([0, record[1], record[2], record[3]]) as usize;
    record.get(4..4 + len)
}

/// The legacy session id of a hello body (after version and random).
fn session_id(hello: &[u8]) -> Option<&[u8]> {
    let len = *hello.get(34)? as usize;
    hello.get(35..35 + len)
}

/// Whether a connection's first bytes start a TLS handshake record (plain HTTP starts with a method).
pub fn looks_like_tls(bytes: &[u8]) -> bool {
    bytes.first() == Some(&22)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hello record: handshake `kind`, a session id, and extensions (kind, body) after the
    /// fields a ServerHello has (cipher, compression); enough for [`classify`].
    fn hello(kind: u8, session: &[u8], extensions: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend([7u8; 32]);
        body.push(session.len() as u8);
        body.extend(session);
        body.extend([0x13, 0x01, 0]);
        let mut ext = Vec::new();
        for (k, data) in extensions {
            ext.extend(k.to_be_bytes());
            ext.extend((data.len() as u16).to_be_bytes());
            ext.extend(*data);
        }
        body.extend((ext.len() as u16).to_be_bytes());
        body.extend(ext);
        let mut message = vec![kind];
        message.extend(&(body.len() as u32).to_be_bytes()[1..]);
        message.extend(body);
        let mut record = vec![22, 3, 1];
        record.extend((message.len() as u16).to_be_bytes());
        record.extend(message);
        record
    }

    #[test]
    fn tls13_resumption_is_the_pre_shared_key_extension() {
        let client = hello(1, &[5; 32], &[]);
        let full = hello(2, &[5; 32], &[(43, &[3, 4]), (51, &[0; 8])]);
        let resumed = hello(2, &[5; 32], &[(43, &[3, 4]), (41, &[0, 0]), (51, &[0; 8])]);
        // TLS 1.3 echoes the session id in compatibility mode: that alone is not resumption.
        assert_eq!(classify(&client, &full), Some(Handshake::Full));
        assert_eq!(classify(&client, &resumed), Some(Handshake::Resumed));
    }

    #[test]
    fn tls12_resumption_is_the_session_id_echoed() {
        let client = hello(1, &[9; 32], &[]);
        assert_eq!(
            classify(&client, &hello(2, &[9; 32], &[])),
            Some(Handshake::Resumed)
        );
        assert_eq!(
            classify(&client, &hello(2, &[1; 32], &[])),
            Some(Handshake::Full)
        );
        assert_eq!(
            classify(&hello(1, &[], &[]), &hello(2, &[], &[])),
            Some(Handshake::Full)
        );
    }

    #[test]
    fn incomplete_or_plain_bytes_are_not_classified() {
        let client = hello(1, &[], &[]);
        let server = hello(2, &[], &[(43, &[3, 4])]);
        assert_eq!(classify(&client, &server[..server.len() - 1]), None);
        assert_eq!(classify(b"GET /v2/ HTTP/1.1\r\n", &server), None);
        assert!(!looks_like_tls(b"GET /v2/"));
    }
}
