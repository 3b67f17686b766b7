//! libyaml's events, one at a time, behind a safe door. It is the parser
//! serde_yaml runs, so what it calls YAML, and where it puts lines and
//! columns, are the same; but read as a stream, it can be stopped at the
//! first event over a bound instead of loading a whole document first.

use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ptr::NonNull;

/// Where an event begins: line and column from 1, as serde_yaml counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl Location {
    fn of(mark: unsafe_libyaml::yaml_mark_t) -> Location {
        Location {
            line: mark.line as usize + 1,
            column: mark.column as usize + 1,
        }
    }
}

/// The bytes of a key kept for messages; a longer key is cut there.
const KEPT: usize = 64;

/// One event of the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    StreamStart,
    StreamEnd,
    /// A document begins; `version` is its `%YAML` directive, if any.
    DocumentStart {
        version: Option<(i32, i32)>,
    },
    DocumentEnd,
    Alias {
        anchor: Vec<u8>,
    },
    /// A scalar: its first [`KEPT`] bytes (enough to name a key).
    Scalar {
        anchor: Option<Vec<u8>>,
        value: Vec<u8>,
    },
    SequenceStart {
        anchor: Option<Vec<u8>>,
    },
    SequenceEnd,
    MappingStart {
        anchor: Option<Vec<u8>>,
    },
    MappingEnd,
}

/// A parser over borrowed text.
pub struct Parser<'a> {
    /// Boxed, never moved: libyaml keeps a pointer to it (its own reader's
    /// state) from `yaml_parser_set_input_string` on.
    sys: Box<unsafe_libyaml::yaml_parser_t>,
    input: PhantomData<&'a [u8]>,
}

impl<'a> Parser<'a> {
    pub fn new(input: &'a [u8]) -> Parser<'a> {
        let mut sys = Box::<unsafe_libyaml::yaml_parser_t>::new_uninit();
        // SAFETY: `yaml_parser_initialize` writes every field (it zeroes the
        // struct, then allocates its buffers); it fails only when malloc
        // does, which Rust's own allocations treat as fatal too. The input
        // outlives the parser ('a), and the parser stays in its box.
        let sys = unsafe {
            let ptr = sys.as_mut_ptr();
            if unsafe_libyaml::yaml_parser_initialize(ptr).fail {
                panic!("libyaml could not allocate its parser");
            }
            unsafe_libyaml::yaml_parser_set_encoding(ptr, unsafe_libyaml::YAML_UTF8_ENCODING);
            unsafe_libyaml::yaml_parser_set_input_string(ptr, input.as_ptr(), input.len() as u64);
            sys.assume_init()
        };
        Parser {
            sys,
            input: PhantomData,
        }
    }

    /// The next event and where it begins, or libyaml's complaint and where.
    pub fn next_event(&mut self) -> Result<(Event, Location), (String, Location)> {
        // Once failed, libyaml stays failed: its complaint again.
        if self.sys.error != unsafe_libyaml::YAML_NO_ERROR {
            return Err(complaint(&self.sys));
        }
        let parser: *mut unsafe_libyaml::yaml_parser_t = &mut *self.sys;
        let mut event = MaybeUninit::<unsafe_libyaml::yaml_event_t>::uninit();
        // SAFETY: the parser was initialised in `new`; an event that
        // `yaml_parser_parse` filled is read, then deleted, once.
        unsafe {
            if unsafe_libyaml::yaml_parser_parse(parser, event.as_mut_ptr()).fail {
                return Err(complaint(&*parser));
            }
            let event = event.as_mut_ptr();
            let read = convert(&*event);
            let at = Location::of((*event).start_mark);
            unsafe_libyaml::yaml_event_delete(event);
            Ok((read, at))
        }
    }
}

impl Drop for Parser<'_> {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, deleted once.
        unsafe { unsafe_libyaml::yaml_parser_delete(&mut *self.sys) }
    }
}

/// libyaml's error, as serde_yaml words it.
fn complaint(parser: &unsafe_libyaml::yaml_parser_t) -> (String, Location) {
    // SAFETY: libyaml's problem and context are static C strings or null.
    let text = |ptr: *const std::ffi::c_char| {
        NonNull::new(ptr.cast_mut())
            .map(|p| unsafe { std::ffi::CStr::from_ptr(p.as_ptr()) })
            .map(|s| s.to_string_lossy().into_owned())
    };
    let mut message = text(parser.problem).unwrap_or_else(|| "not YAML".into());
    if let Some(context) = text(parser.context) {
        message = format!("{message}, {context}");
    }
    (message, Location::of(parser.problem_mark))
}

/// # Safety
///
/// `event` was filled by `yaml_parser_parse` and not yet deleted.
unsafe fn convert(event: &unsafe_libyaml::yaml_event_t) -> Event {
    // SAFETY: the union's field is the one `type_` names; anchors are C
    // strings or null; a scalar's value is `length` bytes.
    unsafe {
        match event.type_ {
            unsafe_libyaml::YAML_DOCUMENT_START_EVENT => {
                let version = event.data.document_start.version_directive;
                Event::DocumentStart {
                    version: NonNull::new(version).map(|v| (v.as_ref().major, v.as_ref().minor)),
                }
            }
            unsafe_libyaml::YAML_DOCUMENT_END_EVENT => Event::DocumentEnd,
            unsafe_libyaml::YAML_ALIAS_EVENT => Event::Alias {
                anchor: anchor(event.data.alias.anchor).unwrap_or_default(),
            },
            unsafe_libyaml::YAML_SCALAR_EVENT => {
                let scalar = event.data.scalar;
                let kept = (scalar.length as usize).min(KEPT);
                let value = match NonNull::new(scalar.value) {
                    Some(value) => std::slice::from_raw_parts(value.as_ptr(), kept).to_vec(),
                    None => Vec::new(),
                };
                Event::Scalar {
                    anchor: anchor(scalar.anchor),
                    value,
                }
            }
            unsafe_libyaml::YAML_SEQUENCE_START_EVENT => Event::SequenceStart {
                anchor: anchor(event.data.sequence_start.anchor),
            },
            unsafe_libyaml::YAML_SEQUENCE_END_EVENT => Event::SequenceEnd,
            unsafe_libyaml::YAML_MAPPING_START_EVENT => Event::MappingStart {
                anchor: anchor(event.data.mapping_start.anchor),
            },
            unsafe_libyaml::YAML_MAPPING_END_EVENT => Event::MappingEnd,
            unsafe_libyaml::YAML_STREAM_START_EVENT => Event::StreamStart,
            // NO-EVENT never comes from a parser that did not fail.
            _ => Event::StreamEnd,
        }
    }
}

/// # Safety
///
/// `ptr` is a C string or null.
unsafe fn anchor(ptr: *const u8) -> Option<Vec<u8>> {
    let ptr = NonNull::new(ptr.cast_mut())?;
    // SAFETY: a C string, as the caller says.
    Some(
        unsafe { std::ffi::CStr::from_ptr(ptr.as_ptr().cast()) }
            .to_bytes()
            .to_vec(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(text: &str) -> Vec<Event> {
        let mut parser = Parser::new(text.as_bytes());
        let mut out = Vec::new();
        loop {
            let (event, _) = parser.next_event().unwrap();
            if event == Event::StreamEnd {
                return out;
            }
            out.push(event);
        }
    }

    #[test]
    fn a_document_reads_as_events_with_their_places() {
        let read = events("%YAML 1.2\n---\na: &x [1, *x]\n");
        assert_eq!(
            read,
            [
                Event::StreamStart,
                Event::DocumentStart {
                    version: Some((1, 2))
                },
                Event::MappingStart { anchor: None },
                Event::Scalar {
                    anchor: None,
                    value: b"a".to_vec()
                },
                Event::SequenceStart {
                    anchor: Some(b"x".to_vec())
                },
                Event::Scalar {
                    anchor: None,
                    value: b"1".to_vec()
                },
                Event::Alias {
                    anchor: b"x".to_vec()
                },
                Event::SequenceEnd,
                Event::MappingEnd,
                Event::DocumentEnd,
            ]
        );
        let mut parser = Parser::new(b"a: 1\nb: [2\n");
        let error = loop {
            match parser.next_event() {
                Ok((Event::StreamEnd, _)) => panic!("no error"),
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert!(error.0.contains("did not find expected"), "{error:?}");
        assert_eq!(error.1.line, 3);
    }
}
