//! A safe wrapper over the part of corehead's C API (corehead.h) this example uses. The `extern`
//! declarations mirror the header's structs field for field (#[repr(C)]); a real binding would
//! generate them with bindgen.
use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr;

#[repr(C)]
#[derive(Clone, Copy)]
pub struct EngineParams {
    pub n_threads: i32,
    pub n_ctx: i64,
    pub n_batch: i64,
    pub backend: *const c_char,
    pub kv_type: *const c_char,
}

#[repr(C)]
pub struct Prompt {
    text: *const c_char,
    tokens: *const i32,
    n_tokens: usize,
    images: *const c_void,
    n_images: usize,
}

type TokenCallback = extern "C" fn(i32, *const c_char, usize, *mut c_void) -> bool;

#[repr(C)]
pub struct GenerateParams {
    pub max_tokens: i32,
    pub temperature: f32,
    pub top_k: i32,
    pub top_p: f32,
    pub min_p: f32,
    pub repeat_penalty: f32,
    pub repeat_last_n: i32,
    pub seed: u64,
    pub stop_at_eog: bool,
    on_token: Option<TokenCallback>,
    user_data: *mut c_void,
}

#[repr(C)]
#[derive(Default, Debug, Clone, Copy)]
pub struct AttentionShape {
    pub n_layer: i32,
    pub n_head: i32,
    pub n_pos: i32,
    pub n_kv: i64,
}

enum RawEngine {}

extern "C" {
    fn corehead_version() -> *const c_char;
    fn corehead_last_error() -> *const c_char;
    fn corehead_engine_default_params() -> EngineParams;
    fn corehead_engine_load(model: *const c_char, mmproj: *const c_char, p: *const EngineParams) -> *mut RawEngine;
    fn corehead_engine_free(e: *mut RawEngine);
    fn corehead_generate_default_params() -> GenerateParams;
    fn corehead_generate(e: *mut RawEngine, p: *const Prompt, g: *const GenerateParams, tokens: *mut i32,
                         capacity: usize, n_out: *mut usize) -> i32;
    fn corehead_attention(e: *mut RawEngine, p: *const Prompt, positions: *const i32, n_positions: usize,
                          layers: *const i32, n_layers: usize, out: *mut f32, capacity: usize,
                          shape: *mut AttentionShape, n_out: *mut usize) -> i32;
}

/// A failed call: the status code and corehead_last_error().
#[derive(Debug)]
pub struct Error {
    pub status: i32,
    pub message: String,
}

fn check(status: i32) -> Result<(), Error> {
    if status == 0 {
        return Ok(());
    }
    Err(Error { status, message: last_error() })
}

fn last_error() -> String {
    unsafe { CStr::from_ptr(corehead_last_error()) }.to_string_lossy().into_owned()
}

pub fn version() -> String {
    unsafe { CStr::from_ptr(corehead_version()) }.to_string_lossy().into_owned()
}

/// One engine; not Sync (the C API's rule: one engine per thread, or serialized calls).
pub struct Engine {
    raw: *mut RawEngine,
}

impl Engine {
    pub fn load(model: &str, n_ctx: i64) -> Result<Engine, Error> {
        let model = CString::new(model).map_err(|_| Error { status: 1, message: "NUL in the path".into() })?;
        let mut p = unsafe { corehead_engine_default_params() };
        p.n_ctx = n_ctx;
        let raw = unsafe { corehead_engine_load(model.as_ptr(), ptr::null(), &p) };
        if raw.is_null() {
            return Err(Error { status: 3, message: last_error() });
        }
        Ok(Engine { raw })
    }

    fn prompt(text: &CString) -> Prompt {
        Prompt { text: text.as_ptr(), tokens: ptr::null(), n_tokens: 0, images: ptr::null(), n_images: 0 }
    }

    /// Greedy generation; `on_piece` sees each token's text and returns false to stop.
    pub fn generate<F: FnMut(i32, &[u8]) -> bool>(&mut self, text: &str, max_tokens: i32, mut on_piece: F)
                                                  -> Result<Vec<i32>, Error> {
        extern "C" fn trampoline<F: FnMut(i32, &[u8]) -> bool>(id: i32, piece: *const c_char, len: usize,
                                                                 user: *mut c_void) -> bool {
            let f = unsafe { &mut *(user as *mut F) };
            let bytes = if len == 0 { &[][..] } else { unsafe { std::slice::from_raw_parts(piece as *const u8, len) } };
            f(id, bytes)
        }
        let text = CString::new(text).unwrap();
        let mut g = unsafe { corehead_generate_default_params() };
        g.max_tokens = max_tokens;
        g.on_token = Some(trampoline::<F>);
        g.user_data = &mut on_piece as *mut F as *mut c_void;
        let mut ids = vec![0i32; max_tokens.max(0) as usize];
        let mut n = 0usize;
        check(unsafe { corehead_generate(self.raw, &Self::prompt(&text), &g, ids.as_mut_ptr(), ids.len(), &mut n) })?;
        ids.truncate(n);
        Ok(ids)
    }

    /// Attention of the prompt's last token: (shape, [n_layer][n_head][1][n_kv] values).
    pub fn last_token_attention(&mut self, text: &str) -> Result<(AttentionShape, Vec<f32>), Error> {
        let text = CString::new(text).unwrap();
        let prompt = Self::prompt(&text);
        let (mut shape, mut n) = (AttentionShape::default(), 0usize);
        check(unsafe { corehead_attention(self.raw, &prompt, ptr::null(), 0, ptr::null(), 0, ptr::null_mut(), 0,
                                          &mut shape, &mut n) })?;
        let mut out = vec![0f32; n];
        check(unsafe { corehead_attention(self.raw, &prompt, ptr::null(), 0, ptr::null(), 0, out.as_mut_ptr(), n,
                                          &mut shape, &mut n) })?;
        Ok((shape, out))
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        unsafe { corehead_engine_free(self.raw) }
    }
}

// Moving an engine to another thread is fine; sharing one is not (no Sync).
unsafe impl Send for Engine {}
