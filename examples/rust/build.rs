// Links libcorehead from COREHEAD_LIB_DIR, or from the installed Python package
// (python -c 'import corehead; print(corehead.get_library())'), with an rpath to it.
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=COREHEAD_LIB_DIR");
    let dir = match std::env::var("COREHEAD_LIB_DIR") {
        Ok(d) => PathBuf::from(d),
        Err(_) => {
            let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
            let out = Command::new(python)
                .args(["-c", "import corehead; print(corehead.get_library())"])
                .output()
                .expect("run python to find corehead.get_library(), or set COREHEAD_LIB_DIR");
            assert!(out.status.success(), "corehead.get_library() failed: {}", String::from_utf8_lossy(&out.stderr));
            PathBuf::from(String::from_utf8(out.stdout).unwrap().trim()).parent().unwrap().to_path_buf()
        }
    };
    println!("cargo:rustc-link-search=native={}", dir.display());
    println!("cargo:rustc-link-lib=dylib=corehead");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
}
