//! Gives libregmirror.so its SONAME, so programs linked against it load a compatible version:
//! `libregmirror.so.MAJOR`, or `libregmirror.so.0.MINOR` while the version is 0.x (where a minor
//! release may break the ABI; `0.0.PATCH` for 0.0.x), the numbering cargo-c uses. `ffi/install.sh` installs the library
//! as `libregmirror.so.MAJOR.MINOR.PATCH` with links of both shorter names to it.

fn main() {
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os != "linux" {
        return;
    }
    let number = |part: &str| {
        let name = format!("CARGO_PKG_VERSION_{part}");
        std::env::var(&name).unwrap_or_else(|_| panic!("cargo sets {name} for build scripts"))
    };
    let (major, minor, patch) = (number("MAJOR"), number("MINOR"), number("PATCH"));
    let abi = match (major.as_str(), minor.as_str()) {
        ("0", "0") => format!("0.0.{patch}"),
        ("0", _) => format!("0.{minor}"),
        _ => major,
    };
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libregmirror.so.{abi}");
}
