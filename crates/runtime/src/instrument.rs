//! Keeps every stretch of a policy's code between two checks of its CPU
//! budget short, whatever the code.
//!
//! Wasmtime checks the epoch (the budget) on entry to a function and at each
//! loop header. Two kinds of code run long between checks:
//!
//! * A bulk memory instruction (`memory.fill`, `memory.copy`) is one
//!   instruction however many bytes it touches: 2,000 fills of 16 MB, no
//!   loop among them, ran 5 s against a 10 ms budget. Each becomes a call
//!   to a helper that does the work in pieces of [`PIECE`] bytes, in a loop.
//! * Returning is not checked: code that recurses deep and then runs a long
//!   stretch in each frame on the way back up runs (depth × stretch)
//!   unchecked. An empty loop after each call checks the budget as soon as
//!   the call returns.
//!
//! Fuel would not help: it is checked at the same places. Cranelift checks
//! the epoch before large bulk operations; Winch, which compiles policies
//! 2-7× faster, does not, nor does either after a return. With these
//! rewrites the longest unchecked run is one function's straight stretch.
//!
//! The rewrite splices the code section's bytes: every other byte of the
//! component is kept as it is; helpers are appended after the module's own
//! functions and types, so no index moves.

use std::borrow::Cow;
use std::ops::Range;

use wasmparser::{Chunk, Operator, Parser, Payload, TypeRef};

/// Bytes a helper fills or copies between two checks: about 0.1 ms of work.
const PIECE: i32 = 1 << 20;

/// Changes whenever the rewrite does, so that code compiled from an older
/// rewrite is not taken from the compile cache.
pub const VERSION: u32 = 1;

/// A component, rewritten. Anything else is returned as it is, for the
/// compiler to refuse.
pub fn instrument(bytes: &[u8]) -> Result<Cow<'_, [u8]>, String> {
    if !is_component(bytes) {
        return Ok(Cow::Borrowed(bytes));
    }
    component(bytes).map(Cow::Owned)
}

fn is_component(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes[..4] == *b"\0asm" && bytes[6..8] == [1, 0]
}

fn invalid(e: wasmparser::BinaryReaderError) -> String {
    e.to_string()
}

/// A component with each of its core modules (and nested components)
/// rewritten; its other sections as they were.
fn component(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = bytes[..8].to_vec();
    let mut parser = Parser::new(0);
    let mut at = 0;
    loop {
        let (consumed, payload) = match parser.parse(&bytes[at..], true).map_err(invalid)? {
            Chunk::Parsed { consumed, payload } => (consumed, payload),
            Chunk::NeedMoreData(_) => return Err("the component ends early".into()),
        };
        at += consumed;
        // The parser reads a nested module or component's header; its
        // bytes are skipped here and rewritten whole.
        let nested: Option<(u8, Rewrite, _)> = match &payload {
            Payload::ModuleSection {
                unchecked_range, ..
            } => Some((1, module, unchecked_range)),
            Payload::ComponentSection {
                unchecked_range, ..
            } => Some((4, component, unchecked_range)),
            _ => None,
        };
        if let Some((id, rewrite, range)) = nested {
            let range = usize_range(range);
            at += range.len();
            section(&mut out, id, &rewrite(&bytes[range])?);
            continue;
        }
        match payload {
            Payload::Version { .. } => {}
            Payload::End(_) => return Ok(out),
            other => {
                if let Some((id, range)) = other.as_section() {
                    section(&mut out, id, &bytes[usize_range(&range)]);
                }
            }
        }
    }
}

/// A nested module's or component's rewrite.
type Rewrite = fn(&[u8]) -> Result<Vec<u8>, String>;

fn usize_range(range: &Range<u64>) -> Range<usize> {
    range.start as usize..range.end as usize
}

/// A helper a module needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Helper {
    Fill(u32),
    Copy(u32, u32),
}

/// A core module's sections as they will be written: most as they were,
/// some rebuilt.
enum Piece {
    Kept(u8, Range<usize>),
    Built(u8, Vec<u8>),
}

/// The helpers a module needs, in the order the code first asks for them,
/// and where they go.
struct Helpers {
    /// The index of the first: after every function of the module.
    first: u32,
    used: Vec<Helper>,
}

impl Helpers {
    fn index(&mut self, helper: Helper) -> u32 {
        let position = match self.used.iter().position(|h| *h == helper) {
            Some(position) => position,
            None => {
                self.used.push(helper);
                self.used.len() - 1
            }
        };
        self.first + position as u32
    }
}

/// A core module, rewritten in one pass; unchanged if it has nothing to
/// rewrite. The type and function sections come before the code, so what
/// they gain (a helper type, the helpers' entries) is added once the code
/// has said which helpers it needs.
fn module(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut pieces = Vec::new();
    let (mut types, mut imported_functions, mut defined_functions) = (0, 0, 0);
    let (mut type_section, mut function_section) = (None, None);
    let mut memories = Vec::new();
    let mut helpers = None;
    let mut code: Option<(u32, Vec<u8>)> = None;
    let mut changed = false;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(invalid)? {
            Payload::Version { .. } => {}
            Payload::TypeSection(reader) => {
                for group in reader.clone() {
                    types += group.map_err(invalid)?.types().len() as u32;
                }
                type_section = Some((pieces.len(), reader.count()));
                pieces.push(Piece::Kept(1, usize_range(&reader.range())));
            }
            Payload::ImportSection(reader) => {
                for import in reader.clone().into_imports() {
                    match import.map_err(invalid)?.ty {
                        TypeRef::Func(_) | TypeRef::FuncExact(_) => imported_functions += 1,
                        TypeRef::Memory(memory) => memories.push(memory),
                        _ => {}
                    }
                }
                pieces.push(Piece::Kept(2, usize_range(&reader.range())));
            }
            Payload::FunctionSection(reader) => {
                defined_functions = reader.count();
                function_section = Some((pieces.len(), reader.count()));
                pieces.push(Piece::Kept(3, usize_range(&reader.range())));
            }
            Payload::MemorySection(reader) => {
                for memory in reader.clone() {
                    memories.push(memory.map_err(invalid)?);
                }
                pieces.push(Piece::Kept(5, usize_range(&reader.range())));
            }
            Payload::CodeSectionStart { count, .. } => {
                // The helpers are written for 32-bit memories of 64 KiB
                // pages, the memories every toolchain makes for wasm32.
                if let Some(memory) = memories
                    .iter()
                    .find(|m| m.memory64 || m.page_size_log2.is_some())
                {
                    let kind = if memory.memory64 {
                        "64-bit"
                    } else {
                        "custom-page-size"
                    };
                    return Err(format!(
                        "a {kind} memory: policies use 32-bit memories of 64 KiB pages (wasm32)"
                    ));
                }
                helpers = Some(Helpers {
                    first: imported_functions + defined_functions,
                    used: Vec::new(),
                });
                code = Some((count, Vec::new()));
                if count == 0 {
                    pieces.push(Piece::Built(10, vec![0]));
                }
            }
            Payload::CodeSectionEntry(body) => {
                let (left, content) = code.as_mut().ok_or("a function body outside code")?;
                let helpers = helpers.as_mut().expect("set with the code");
                changed |= rewrite_body(bytes, &body, helpers, content)?;
                *left -= 1;
                if *left == 0 {
                    let (_, bodies) = code.take().expect("just seen");
                    let mut content = Vec::new();
                    leb(&mut content, defined_functions + helpers.used.len() as u32);
                    content.extend_from_slice(&bodies);
                    for helper in &helpers.used {
                        helper_body(*helper, &mut content);
                    }
                    pieces.push(Piece::Built(10, content));
                }
            }
            // Hints addressed by code offsets, which the rewrite moves.
            Payload::CustomSection(custom) if custom.name().starts_with("metadata.code.") => {
                changed = true;
            }
            Payload::End(_) => break,
            other => {
                if let Some((id, range)) = other.as_section() {
                    pieces.push(Piece::Kept(id, usize_range(&range)));
                }
            }
        }
    }
    if !changed {
        return Ok(bytes.to_vec());
    }
    let added = helpers.map_or(0, |h| h.used.len() as u32);
    if added > 0 {
        let (at, count) = type_section.ok_or("helpers without a type section")?;
        let Piece::Kept(_, range) = &pieces[at] else {
            unreachable!("kept above")
        };
        let mut content = Vec::new();
        leb(&mut content, count + 1);
        content.extend_from_slice(after_count(bytes, range.clone()));
        // (i32 i32 i32) -> (): every helper's type, the module's last.
        content.extend_from_slice(&[0x60, 3, 0x7f, 0x7f, 0x7f, 0]);
        pieces[at] = Piece::Built(1, content);
        let (at, count) = function_section.ok_or("helpers without a function section")?;
        let Piece::Kept(_, range) = &pieces[at] else {
            unreachable!("kept above")
        };
        let mut content = Vec::new();
        leb(&mut content, count + added);
        content.extend_from_slice(after_count(bytes, range.clone()));
        for _ in 0..added {
            leb(&mut content, types);
        }
        pieces[at] = Piece::Built(3, content);
    }
    let mut out = bytes[..8].to_vec();
    for piece in &pieces {
        match piece {
            Piece::Kept(id, range) => section(&mut out, *id, &bytes[range.clone()]),
            Piece::Built(id, content) => section(&mut out, *id, content),
        }
    }
    Ok(out)
}

/// The bytes of a vector section after its count.
fn after_count(bytes: &[u8], range: Range<usize>) -> &[u8] {
    let content = &bytes[range];
    let count_len = content
        .iter()
        .position(|b| b & 0x80 == 0)
        .map_or(0, |i| i + 1);
    &content[count_len..]
}

/// A function body with each bulk instruction a call to its helper, and a
/// check after each call; returns whether it changed.
fn rewrite_body(
    bytes: &[u8],
    body: &wasmparser::FunctionBody<'_>,
    helpers: &mut Helpers,
    out: &mut Vec<u8>,
) -> Result<bool, String> {
    let range = usize_range(&body.range());
    let mut ops = body.get_operators_reader().map_err(invalid)?;
    let mut copied = ops.original_position() as usize;
    let mut new = bytes[range.start..copied].to_vec();
    let mut changed = false;
    while !ops.eof() {
        let (op, start) = ops.read_with_offset().map_err(invalid)?;
        let (start, end) = (start as usize, ops.original_position() as usize);
        let helper = match op {
            Operator::MemoryFill { mem } => Helper::Fill(mem),
            Operator::MemoryCopy { dst_mem, src_mem } => Helper::Copy(dst_mem, src_mem),
            Operator::Call { .. } | Operator::CallIndirect { .. } | Operator::CallRef { .. } => {
                new.extend_from_slice(&bytes[copied..end]);
                // loop end: an epoch check, nothing else.
                new.extend_from_slice(&[0x03, 0x40, 0x0b]);
                copied = end;
                changed = true;
                continue;
            }
            _ => continue,
        };
        new.extend_from_slice(&bytes[copied..start]);
        new.push(0x10);
        leb(&mut new, helpers.index(helper));
        copied = end;
        changed = true;
    }
    new.extend_from_slice(&bytes[copied..range.end]);
    leb(out, new.len() as u32);
    out.extend_from_slice(&new);
    Ok(changed)
}

/// The body of a helper: params (dst, value or src, len), all i32. A
/// piece or less is done as the instruction itself; more is checked against
/// the memory's size first (so that, as the instruction would, it traps
/// before touching anything), then done piece by piece, the budget checked
/// at each.
fn helper_body(helper: Helper, out: &mut Vec<u8>) {
    let mut c = Code::default();
    c.bytes.push(0); // no locals
    let op = |c: &mut Code| {
        match helper {
            Helper::Fill(m) => c.op(&[0xfc, 11]).idx(m),
            Helper::Copy(d, s) => c.op(&[0xfc, 10]).idx(d).idx(s),
        };
    };
    // Small: at once.
    c.get(2).i32(PIECE).op(&[0x4d, 0x04, 0x40]); // i32.le_u if
    c.get(0).get(1).get(2);
    op(&mut c);
    c.op(&[0x0f, 0x0b]); // return end
    // In bounds, as the instruction checks before it writes.
    let (dst, src) = match helper {
        Helper::Fill(m) => (m, None),
        Helper::Copy(d, s) => (d, Some(s)),
    };
    c.bounds(0, dst);
    if let Some(src) = src {
        c.bounds(1, src);
    }
    match helper {
        Helper::Fill(_) => {
            // block loop: while len > piece, fill a piece and move on.
            c.op(&[0x02, 0x40, 0x03, 0x40]);
            c.get(2).i32(PIECE).op(&[0x4d, 0x0d, 1]); // i32.le_u br_if 1
            c.get(0).get(1).i32(PIECE);
            op(&mut c);
            c.advance(0, 0x6a).advance(2, 0x6b);
            c.op(&[0x0c, 0, 0x0b, 0x0b]); // br 0 end end
        }
        Helper::Copy(..) => {
            // Forward when the destination is below the source (so an
            // overlap reads each byte before it is written)...
            c.get(0).get(1).op(&[0x4d, 0x04, 0x40, 0x03, 0x40]); // i32.le_u if loop
            c.get(0).get(1).i32(PIECE);
            op(&mut c);
            c.advance(0, 0x6a).advance(1, 0x6a).advance(2, 0x6b);
            c.get(2).i32(PIECE).op(&[0x4b, 0x0d, 0, 0x0b]); // i32.gt_u br_if 0 end
            c.get(0).get(1).get(2);
            op(&mut c);
            c.op(&[0x0f, 0x0b]); // return end
            // ...else backward, the highest piece first.
            c.op(&[0x03, 0x40]);
            c.advance(2, 0x6b);
            c.get(0)
                .get(2)
                .op(&[0x6a])
                .get(1)
                .get(2)
                .op(&[0x6a])
                .i32(PIECE);
            op(&mut c);
            c.get(2).i32(PIECE).op(&[0x4b, 0x0d, 0, 0x0b]);
        }
    }
    c.get(0).get(1).get(2);
    op(&mut c);
    c.op(&[0x0b]);
    leb(out, c.bytes.len() as u32);
    out.extend_from_slice(&c.bytes);
}

/// A few instructions, encoded.
#[derive(Default)]
struct Code {
    bytes: Vec<u8>,
}

impl Code {
    fn op(&mut self, bytes: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(bytes);
        self
    }

    fn idx(&mut self, index: u32) -> &mut Self {
        leb(&mut self.bytes, index);
        self
    }

    fn get(&mut self, local: u8) -> &mut Self {
        self.op(&[0x20, local])
    }

    fn i32(&mut self, value: i32) -> &mut Self {
        self.bytes.push(0x41);
        sleb(&mut self.bytes, i64::from(value));
        self
    }

    /// local = local (add or sub) PIECE.
    fn advance(&mut self, local: u8, add_or_sub: u8) -> &mut Self {
        self.get(local).i32(PIECE).op(&[add_or_sub, 0x21, local])
    }

    /// Traps unless local + len (local 2) is within memory `m`.
    fn bounds(&mut self, local: u8, m: u32) -> &mut Self {
        // i64.extend_i32_u(local) + i64.extend_i32_u(len) > memory.size(m) << 16
        self.get(local).op(&[0xad]).get(2).op(&[0xad, 0x7c, 0x3f]);
        self.idx(m)
            .op(&[0xad, 0x42, 16, 0x86, 0x56, 0x04, 0x40, 0x00, 0x0b])
    }
}

/// A section: its id, its size, its content.
fn section(out: &mut Vec<u8>, id: u8, content: &[u8]) {
    out.push(id);
    leb(out, content.len() as u32);
    out.extend_from_slice(content);
}

fn leb(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn sleb(out: &mut Vec<u8>, mut value: i64) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        let done = (value == 0 && byte & 0x40 == 0) || (value == -1 && byte & 0x40 != 0);
        if done {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `run` of a core module, rewritten, with fresh memory: the
    /// helpers must do exactly what the instructions did.
    fn run(wat: &str) -> Vec<u8> {
        let bytes = wat::parse_str(wat).unwrap();
        let rewritten = module(&bytes).unwrap();
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let engine = wasmtime::Engine::new(&config).unwrap();
        let module = wasmtime::Module::new(&engine, &rewritten).unwrap();
        let mut store = wasmtime::Store::new(&engine, ());
        store.set_epoch_deadline(1_000_000);
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        let run = instance
            .get_typed_func::<(), ()>(&mut store, "run")
            .unwrap();
        let memory = instance.get_memory(&mut store, "memory").unwrap();
        match run.call(&mut store, ()) {
            Ok(()) => memory.data(&store)[..4 << 20].to_vec(),
            Err(e) => vec![e.downcast_ref::<wasmtime::Trap>().is_some() as u8; 1],
        }
    }

    /// A pattern in the first 3 MiB, then `body`.
    fn program(body: &str) -> String {
        format!(
            r#"(module (memory (export "memory") 64)
              (func $pattern (local $i i32)
                (loop $l
                  (i32.store8 (local.get $i) (i32.rem_u (local.get $i) (i32.const 251)))
                  (local.set $i (i32.add (local.get $i) (i32.const 1)))
                  (br_if $l (i32.lt_u (local.get $i) (i32.const 3145728)))))
              (func (export "run") (call $pattern) {body}))"#
        )
    }

    #[test]
    fn helpers_do_what_the_instructions_did() {
        let cases = [
            // Large and small fills and copies, overlapping both ways.
            "(memory.fill (i32.const 5) (i32.const 7) (i32.const 2500000))",
            "(memory.fill (i32.const 5) (i32.const 7) (i32.const 3))",
            "(memory.copy (i32.const 100) (i32.const 0) (i32.const 2500001))",
            "(memory.copy (i32.const 0) (i32.const 100) (i32.const 2500001))",
            "(memory.copy (i32.const 3000000) (i32.const 7) (i32.const 1048576))",
            "(memory.copy (i32.const 10) (i32.const 20) (i32.const 30))",
            "(memory.copy (i32.const 77) (i32.const 77) (i32.const 2097153))",
        ];
        for case in cases {
            let program = program(case);
            let ours = run(&program);
            let bytes = wat::parse_str(&program).unwrap();
            let engine = wasmtime::Engine::default();
            let module = wasmtime::Module::new(&engine, &bytes).unwrap();
            let mut store = wasmtime::Store::new(&engine, ());
            let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
            let f = instance
                .get_typed_func::<(), ()>(&mut store, "run")
                .unwrap();
            f.call(&mut store, ()).unwrap();
            let memory = instance.get_memory(&mut store, "memory").unwrap();
            assert!(ours == memory.data(&store)[..4 << 20], "{case}");
        }
    }

    #[test]
    fn out_of_bounds_traps_before_writing() {
        // 4 MiB memory: a fill past its end traps and leaves it untouched.
        let wat = r#"(module (memory (export "memory") 64)
            (func (export "run")
              (memory.fill (i32.const 2000000) (i32.const 9) (i32.const 3000000))))"#;
        assert_eq!(run(wat), vec![1]);
        let wat = r#"(module (memory (export "memory") 64)
            (func (export "run")
              (memory.copy (i32.const 0) (i32.const 4000000) (i32.const 2000000))))"#;
        assert_eq!(run(wat), vec![1]);
    }

    #[test]
    fn calls_are_followed_by_a_check_and_indices_stay() {
        let wat = r#"(module
            (import "x" "f" (func $f))
            (memory 1)
            (func $g (param i32) (result i32) (memory.fill (i32.const 0) (i32.const 0) (local.get 0)) (local.get 0))
            (func (export "h") (result i32) (call $f) (call $g (i32.const 3))))"#;
        let bytes = wat::parse_str(wat).unwrap();
        let out = module(&bytes).unwrap();
        wasmtime::Module::validate(&wasmtime::Engine::default(), &out).unwrap();
        let mut bodies = Vec::new();
        for payload in Parser::new(0).parse_all(&out) {
            if let Payload::CodeSectionEntry(body) = payload.unwrap() {
                let ops = body.get_operators_reader().unwrap();
                let ops: Vec<String> = ops
                    .into_iter()
                    .map(|op| format!("{:?}", op.unwrap()))
                    .collect();
                bodies.push(ops.join(" "));
            }
        }
        // The helper is function 3, after the import and the two bodies.
        assert!(
            bodies[0].contains("Call { function_index: 3 }"),
            "{}",
            bodies[0]
        );
        assert!(
            bodies[1].starts_with("Call { function_index: 0 } Loop { blockty: Empty } End"),
            "{}",
            bodies[1]
        );
        assert_eq!(bodies.len(), 3);
    }

    #[test]
    fn a_module_with_nothing_to_rewrite_is_kept() {
        let bytes = wat::parse_str("(module (func (export \"x\") nop))").unwrap();
        assert_eq!(module(&bytes).unwrap(), bytes);
    }

    #[test]
    fn leb_encodings() {
        let mut out = Vec::new();
        sleb(&mut out, i64::from(PIECE));
        assert_eq!(out, [0x80, 0x80, 0xc0, 0x00]);
        out.clear();
        leb(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
    }
}
