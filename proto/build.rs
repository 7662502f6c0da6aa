//! Compiles `proto/` with protox (pure Rust, no protoc) and generates tonic
//! code plus the encoded descriptor set used for reflection and policy lookup.

use std::{env, path::PathBuf};

const FILES: &[&str] = &[
    "steward/common/v1/common.proto",
    "steward/common/v1/policy.proto",
    "steward/audit/v1/audit_event.proto",
    "steward/audit/v1/audit_service.proto",
    "steward/notifications/v1/notification.proto",
    "steward/accounts/v1/accounts_service.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=steward");
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let mut compiler = protox::Compiler::new(["."])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(FILES)?;
    // Encoded by prost-reflect rather than prost-types so that custom options
    // (our policy extension) survive in the bytes.
    std::fs::write(
        out.join("steward_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    let fds = compiler.file_descriptor_set();
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
