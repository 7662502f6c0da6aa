//! Compiles `proto/` with protox (pure Rust, no protoc) and generates tonic
//! code plus the encoded descriptor set used for reflection and policy lookup.

use std::{
    env,
    path::{Path, PathBuf},
};

/// Every .proto under `steward/`: a new file is compiled (and its RPCs
/// checked for a policy) without anyone having to list it.
fn proto_files(dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            proto_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=steward");
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let mut compiler = protox::Compiler::new(["."])?;
    compiler.include_imports(true).include_source_info(true);
    let mut files = Vec::new();
    proto_files(Path::new("steward"), &mut files)?;
    files.sort();
    compiler.open_files(&files)?;
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
        .codec_path("crate::codec::StewardCodec")
        .compile_fds(fds)?;
    Ok(())
}
