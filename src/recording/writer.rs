//! The recording policy for one source (the program or a camera): which frames go to which file,
//! where fragments end, and when a file closes and the next one opens. Pure apart from the
//! [`Storage`] that creates files, so tests run it over `Vec`s.
//!
//! - A file starts at a video keyframe (audio that overlaps it is kept), or, for a source that
//!   sends no video, once two seconds of audio have arrived.
//! - Fragments: see [`super::fragmenter`]; one every `record.fragment` of media.
//! - A new file starts at a keyframe once the file holds `split_duration` of media or
//!   `split_size_mb` of bytes.
//! - **A new codec configuration starts a new file.** Each file has one init segment (`moov`),
//!   because that is what every player, editor and `ffmpeg -c copy` handles: a second `moov` in
//!   a file, or samples that no longer match the only `avcC`, are ignored or break decoders. A
//!   program cut to a camera with another resolution or audio rate therefore ends the file at the
//!   cut and opens the next with the new camera's configuration. Configurations compare by value,
//!   so a cut between two cameras with identical settings stays in one file.
//! - An audio configuration change arrives after the keyframe it goes with (the program emits the
//!   cut keyframe first): the file is cut back at that keyframe, still held in memory. Should none
//!   be held, audio is dropped until the next keyframe, which starts the new file.
//! - A break in the source (lost frames, a reconnect) ends the fragment; recording resumes at the
//!   next keyframe in the same file, and the gap stays a gap in its decode times.

use std::io;

use chrono::{DateTime, Utc};

use super::file::{FileWriter, Sink, Tracks, WriteError};
use super::fragmenter::{audio_frame_ticks, time_of, Cut, Fragmenter};
use crate::config::RecordConfig;
use crate::media::{Frame, Track, VIDEO_TIMESCALE};

/// Audio kept while waiting for the first keyframe; a source with no video after this much
/// audio is recorded audio-only (90 kHz).
const AUDIO_WAIT: i64 = 2 * VIDEO_TIMESCALE as i64;

/// Creates a source's files.
pub trait Storage {
    type Sink: Sink;
    /// Creates the next file, opened at `now`; returns its name and where its bytes go.
    fn create(&mut self, now: DateTime<Utc>) -> Result<(String, Self::Sink), RecordError>;
}

/// Where fragments and files end, in media terms.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Fragment length (90 kHz): the most a crash loses.
    pub fragment: i64,
    /// A file holding this much media (90 kHz) is split at the next keyframe.
    pub split_duration: i64,
    /// A file holding this many bytes is split at the next keyframe.
    pub split_bytes: u64,
}

impl Limits {
    pub fn from_config(config: &RecordConfig) -> Limits {
        let ticks = |d: std::time::Duration| (d.as_secs_f64() * f64::from(VIDEO_TIMESCALE)) as i64;
        Limits {
            fragment: ticks(config.fragment),
            split_duration: ticks(config.split_duration),
            split_bytes: config.split_size_mb.saturating_mul(1024 * 1024),
        }
    }
}

/// Why a file was closed, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Recording stopped, or the source went away.
    Stopped,
    /// `split_duration` or `split_size_mb` reached.
    Split,
    /// A new codec configuration (or a track appearing) needs a new init segment.
    NewConfig,
    /// A write failed; the file ends after its last complete fragment.
    Failed,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Stopped => "stopped",
            Why::Split => "split",
            Why::NewConfig => "new codec configuration",
            Why::Failed => "write failed",
        }
    }
}

/// What happened to files, for the caller's status, metrics, logs and webhooks.
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    /// A file was created.
    Opened { name: String },
    /// A fragment of `bytes` was written; the file now holds `duration` s in `size` bytes.
    Wrote {
        name: String,
        bytes: u64,
        duration: f64,
        size: u64,
    },
    /// A file is finished (nothing more will be written to it).
    Closed {
        name: String,
        duration: f64,
        size: u64,
        why: Why,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// A file could not be created (the folder is missing, not a folder, or read-only).
    #[error("{0}")]
    Create(String),
    /// A write failed (disk full, I/O error).
    #[error("writing {name}: {source}")]
    Write { name: String, source: io::Error },
}

impl RecordError {
    /// Whether the disk (or a quota) is full.
    pub fn is_full(&self) -> bool {
        match self {
            RecordError::Write { source, .. } => {
                source.kind() == io::ErrorKind::StorageFull
                    || source.kind() == io::ErrorKind::QuotaExceeded
            }
            RecordError::Create(_) => false,
        }
    }
}

/// The file frames currently go to.
#[derive(Debug)]
struct Open<S> {
    /// The file's name (its directory is the storage's business).
    name: String,
    /// Writes its init and fragments.
    writer: FileWriter<S>,
    /// Where its media starts (90 kHz, source timeline): `split_duration` counts from here.
    start: i64,
    /// The configurations of the frames given to it, compared by value with new frames; the
    /// first fragment writes them into the init segment.
    tracks: Tracks,
}

/// One source's recording: frames in, files out.
#[derive(Debug)]
pub struct Recording<St: Storage> {
    /// Creates files.
    storage: St,
    /// Fragment and split limits.
    limits: Limits,
    /// The fragment being gathered.
    fragmenter: Fragmenter,
    /// The file being written, if any.
    file: Option<Open<St::Sink>>,
    /// Frames flow into the file. False before the first keyframe and after a break: video waits
    /// for a keyframe and audio waits in `early_audio`.
    synced: bool,
    /// Audio that arrived while not synced, the last [`AUDIO_WAIT`] of it.
    early_audio: Vec<Frame>,
    /// The source has sent video; one that has not is recorded audio-only after `AUDIO_WAIT`.
    seen_video: bool,
    /// The audio configuration changed with no keyframe held to cut at: audio is dropped until
    /// the next keyframe, which starts a new file.
    audio_change: bool,
    /// What happened since the caller last looked.
    notes: Vec<Note>,
}

impl<St: Storage> Recording<St> {
    pub fn new(storage: St, limits: Limits) -> Self {
        Recording {
            storage,
            limits,
            fragmenter: Fragmenter::default(),
            file: None,
            synced: false,
            early_audio: Vec::new(),
            seen_video: false,
            audio_change: false,
            notes: Vec::new(),
        }
    }

    /// What happened since the last call.
    pub fn take_notes(&mut self) -> Vec<Note> {
        std::mem::take(&mut self.notes)
    }

    /// The file being written: name, seconds of media and bytes on disk.
    pub fn current(&self) -> Option<(&str, f64, u64)> {
        self.file
            .as_ref()
            .map(|f| (f.name.as_str(), f.writer.duration(), f.writer.committed()))
    }

    pub fn storage(&self) -> &St {
        &self.storage
    }

    /// Records one frame that arrived at `now` (which names any file it opens). An error means
    /// the file was closed at its last complete fragment and recording cannot go on.
    pub fn push(&mut self, frame: Frame, now: DateTime<Utc>) -> Result<(), RecordError> {
        let result = self.push_inner(frame, now);
        if result.is_err() {
            self.reset();
        }
        result
    }

    /// Closes the file (recording stopped, or the source went away). The next frame starts a
    /// new file at a keyframe.
    pub fn finish(&mut self) -> Result<(), RecordError> {
        let result = self.close(Cut::All(None), Why::Stopped);
        self.reset();
        result
    }

    fn reset(&mut self) {
        self.file = None;
        self.fragmenter.clear();
        self.early_audio.clear();
        self.synced = false;
        self.audio_change = false;
    }

    fn push_inner(&mut self, frame: Frame, now: DateTime<Utc>) -> Result<(), RecordError> {
        if frame.discontinuity && self.file.is_some() {
            self.write(Cut::All(None))?;
            if self.has_video() {
                self.synced = false;
            }
        }
        match frame.track {
            Track::Video(_) => self.push_video(frame, now),
            Track::Audio(_) => self.push_audio(frame, now),
        }
    }

    fn has_video(&self) -> bool {
        self.file.as_ref().is_some_and(|f| f.tracks.video.is_some())
    }

    fn push_video(&mut self, frame: Frame, now: DateTime<Utc>) -> Result<(), RecordError> {
        self.seen_video = true;
        if frame.keyframe {
            self.at_keyframe(&frame, now)?;
        } else if !(self.synced && self.has_video()) {
            return Ok(()); // undecodable until a keyframe
        }
        if let Some(start) = self.fragmenter.start() {
            if frame.dts - start >= self.limits.fragment {
                self.write(Cut::Before(frame.dts))?;
            }
        }
        let keyframe = frame.dts;
        self.fragmenter.push(frame);
        // Audio that waited for this keyframe: what overlaps it or comes after it.
        for audio in std::mem::take(&mut self.early_audio) {
            if time_of(&audio) + audio_frame_ticks(&audio) > keyframe {
                self.push_synced_audio(audio, now)?;
            }
        }
        Ok(())
    }

    /// A keyframe: the place to open, split or replace the file.
    fn at_keyframe(&mut self, frame: &Frame, now: DateTime<Utc>) -> Result<(), RecordError> {
        let Track::Video(config) = &frame.track else {
            return Ok(());
        };
        match &self.file {
            None => self.open(frame.dts, now)?,
            Some(file) => {
                let new_config = file.tracks.video.as_ref().is_none_or(|v| **v != **config);
                if new_config {
                    // The previous source's media, audio included, ends this file.
                    self.close(Cut::All(Some(frame.dts)), Why::NewConfig)?;
                    self.open(frame.dts, now)?;
                } else if self.audio_change {
                    self.close(Cut::Before(frame.dts), Why::NewConfig)?;
                    self.fragmenter.clear_audio();
                    self.audio_change = false;
                    self.open(frame.dts, now)?;
                } else if self.split_due(frame.dts) {
                    self.close(Cut::Before(frame.dts), Why::Split)?;
                    self.open(frame.dts, now)?;
                }
            }
        }
        if let Some(file) = self.file.as_mut() {
            file.tracks.video.get_or_insert_with(|| config.clone());
        }
        self.synced = true;
        Ok(())
    }

    fn split_due(&self, time: i64) -> bool {
        self.file.as_ref().is_some_and(|file| {
            time - file.start >= self.limits.split_duration
                || file.writer.committed() + self.fragmenter.bytes() as u64
                    >= self.limits.split_bytes
        })
    }

    fn push_audio(&mut self, frame: Frame, now: DateTime<Utc>) -> Result<(), RecordError> {
        if self.synced && self.file.is_some() {
            return self.push_synced_audio(frame, now);
        }
        let newest = time_of(&frame);
        self.early_audio.push(frame);
        let oldest = self.early_audio.first().map_or(newest, time_of);
        if self.seen_video || newest - oldest < AUDIO_WAIT {
            self.early_audio
                .retain(|f| newest - time_of(f) <= AUDIO_WAIT);
            return Ok(());
        }
        // No video: an audio-only source.
        if self.file.is_none() {
            self.open(oldest, now)?;
        }
        self.synced = true;
        for audio in std::mem::take(&mut self.early_audio) {
            self.push_synced_audio(audio, now)?;
        }
        Ok(())
    }

    fn push_synced_audio(&mut self, frame: Frame, now: DateTime<Utc>) -> Result<(), RecordError> {
        let Track::Audio(config) = &frame.track else {
            return Ok(());
        };
        let config = config.clone();
        if self.audio_change {
            return Ok(());
        }
        let time = time_of(&frame);
        let Some(file) = self.file.as_ref() else {
            return Ok(());
        };
        let differs = match &file.tracks.audio {
            Some(audio) => **audio != *config,
            // The init was written without audio: the track cannot be added to this file.
            None => file.writer.tracks().is_some(),
        };
        let audio_only = file.tracks.video.is_none();
        if differs {
            if audio_only {
                self.close(Cut::All(None), Why::NewConfig)?;
                self.open(time, now)?;
            } else if let Some((keyframe, _)) = self.fragmenter.last_keyframe() {
                // The keyframe this audio goes with is still held: the new file starts there.
                self.close(Cut::Before(keyframe), Why::NewConfig)?;
                self.fragmenter.clear_audio();
                self.open(keyframe, now)?;
            } else {
                self.audio_change = true;
                tracing::warn!(
                    "audio configuration changed between keyframes; audio is dropped until the \
                     next keyframe, which starts a new file"
                );
                return Ok(());
            }
        } else if audio_only && self.split_due(time) {
            self.close(Cut::Before(time), Why::Split)?;
            self.open(time, now)?;
        }
        if let Some(start) = self.fragmenter.start() {
            // Fragments end on video frames; on audio when there is no video, or when video
            // stalls while audio flows (so memory and crash loss stay bounded).
            let limit = if self.has_video() {
                2 * self.limits.fragment
            } else {
                self.limits.fragment
            };
            if time - start >= limit {
                self.write(Cut::Before(time))?;
            }
        }
        self.fragmenter.push(frame);
        if let Some(file) = self.file.as_mut() {
            file.tracks.audio.get_or_insert(config);
        }
        Ok(())
    }

    /// Opens the next file; frames still held (from a cut at a keyframe) go into it.
    fn open(&mut self, start: i64, now: DateTime<Utc>) -> Result<(), RecordError> {
        let (name, sink) = self.storage.create(now)?;
        let (video, audio) = self.fragmenter.configs();
        self.notes.push(Note::Opened { name: name.clone() });
        self.file = Some(Open {
            name,
            writer: FileWriter::new(sink),
            start,
            tracks: Tracks { video, audio },
        });
        self.synced = true;
        Ok(())
    }

    /// Writes what `cut` takes of the held frames, then closes the file.
    fn close(&mut self, cut: Cut, why: Why) -> Result<(), RecordError> {
        if self.file.is_none() {
            return Ok(());
        }
        self.write(cut)?;
        if let Some(file) = self.file.take() {
            self.notes.push(Note::Closed {
                name: file.name,
                duration: file.writer.duration(),
                size: file.writer.committed(),
                why,
            });
        }
        Ok(())
    }

    /// Writes what `cut` takes of the held frames to the file as one fragment.
    fn write(&mut self, cut: Cut) -> Result<(), RecordError> {
        let Some(media) = self.fragmenter.take(cut) else {
            return Ok(());
        };
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        match file.writer.write(&media, &file.tracks) {
            Ok(bytes) => {
                self.notes.push(Note::Wrote {
                    name: file.name.clone(),
                    bytes,
                    duration: file.writer.duration(),
                    size: file.writer.committed(),
                });
                Ok(())
            }
            Err(WriteError::Encode(e)) => {
                tracing::error!(file = %file.name, error = %e, "fragment skipped");
                Ok(())
            }
            Err(WriteError::Io(source)) => {
                let file = self.file.take().expect("checked above");
                self.notes.push(Note::Closed {
                    name: file.name.clone(),
                    duration: file.writer.duration(),
                    size: file.writer.committed(),
                    why: Why::Failed,
                });
                Err(RecordError::Write {
                    name: file.name,
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::segmenter::tests::{audio, audio_config, stream, video, video_config};
    use crate::media::{AudioConfig, VideoConfig};
    use crate::recording::file::tests::FailingSink;
    use std::sync::{Arc, Mutex};

    /// A file in memory that the test can read while the recording holds it.
    #[derive(Debug, Clone, Default)]
    struct Shared(
        /// The file's bytes, shared by the recording's sink and the test.
        Arc<Mutex<Vec<u8>>>,
    );

    impl Sink for Shared {
        fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(())
        }
        fn sync(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn truncate(&mut self, len: u64) -> io::Result<()> {
            self.0.lock().unwrap().truncate(len as usize);
            Ok(())
        }
    }

    /// Files named `f1`, `f2`, ... in memory.
    #[derive(Debug, Default)]
    struct Memory {
        /// Every file created, in order, with its name.
        files: Vec<(String, Shared)>,
    }

    impl Storage for Memory {
        type Sink = Shared;
        fn create(&mut self, _now: DateTime<Utc>) -> Result<(String, Shared), RecordError> {
            let name = format!("f{}", self.files.len() + 1);
            let sink = Shared::default();
            self.files.push((name.clone(), sink.clone()));
            Ok((name, sink))
        }
    }

    impl Memory {
        fn bytes(&self, i: usize) -> Vec<u8> {
            self.files[i].1 .0.lock().unwrap().clone()
        }
    }

    /// Storage whose files fail from their `fail_at`th write.
    #[derive(Debug)]
    struct Failing(
        /// The write (from 1) from which every write fails.
        u32,
    );

    impl Storage for Failing {
        type Sink = FailingSink;
        fn create(&mut self, _now: DateTime<Utc>) -> Result<(String, FailingSink), RecordError> {
            Ok((
                "full".into(),
                FailingSink {
                    fail_at: self.0,
                    ..Default::default()
                },
            ))
        }
    }

    fn limits() -> Limits {
        Limits {
            fragment: 90_000,
            split_duration: 3600 * 90_000,
            split_bytes: u64::MAX,
        }
    }

    /// `stream` moved `offset_s` later, with the given configurations.
    fn source(
        seconds: f64,
        offset_s: f64,
        v: &Arc<VideoConfig>,
        a: &Arc<AudioConfig>,
    ) -> Vec<Frame> {
        stream(seconds, 30)
            .into_iter()
            .map(|mut f| {
                match &f.track {
                    Track::Video(_) => {
                        f.track = Track::Video(v.clone());
                        f.dts += (offset_s * 90_000.0) as i64;
                    }
                    Track::Audio(_) => {
                        f.track = Track::Audio(a.clone());
                        f.dts += (offset_s * f64::from(a.sample_rate)) as i64;
                    }
                }
                f
            })
            .collect()
    }

    fn run<St: Storage>(recording: &mut Recording<St>, frames: Vec<Frame>) {
        for frame in frames {
            recording.push(frame, Utc::now()).unwrap();
        }
    }

    /// What the `mp4` crate reads in a file.
    struct Read {
        /// The `avc1` width.
        width: u16,
        /// `moof` boxes.
        fragments: usize,
        /// The first video sample is a sync sample.
        first_sync: bool,
        /// Summed video sample durations.
        video_seconds: f64,
        /// The `mp4a` sample rate, if there is audio.
        sample_rate: Option<u32>,
    }

    fn read(bytes: &[u8]) -> Read {
        let size = bytes.len() as u64;
        let reader = mp4::Mp4Reader::read_header(std::io::Cursor::new(bytes.to_vec()), size)
            .expect("the mp4 crate reads the file");
        let mut width = 0;
        let mut sample_rate = None;
        for trak in &reader.moov.traks {
            if let Some(avc1) = &trak.mdia.minf.stbl.stsd.avc1 {
                width = avc1.width;
            }
            if let Some(mp4a) = &trak.mdia.minf.stbl.stsd.mp4a {
                sample_rate = Some(mp4a.samplerate.value() as u32);
            }
        }
        let video: Vec<_> = reader
            .moofs
            .iter()
            .flat_map(|m| &m.trafs)
            .filter(|t| t.tfhd.track_id == 1)
            .collect();
        let first_sync = video
            .first()
            .and_then(|t| t.trun.as_ref())
            .and_then(|r| r.sample_flags.first().copied())
            .is_some_and(|flags| flags & 0x0001_0000 == 0);
        let ticks: u64 = video
            .iter()
            .flat_map(|t| t.trun.as_ref().unwrap().sample_durations.iter())
            .map(|&d| u64::from(d))
            .sum();
        Read {
            width,
            fragments: reader.moofs.len(),
            first_sync,
            video_seconds: ticks as f64 / 90_000.0,
            sample_rate,
        }
    }

    fn closed(notes: &[Note]) -> Vec<(String, Why)> {
        notes
            .iter()
            .filter_map(|n| match n {
                Note::Closed { name, why, .. } => Some((name.clone(), *why)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn same_config_by_value_stays_in_one_file_another_starts_a_new_one() {
        let a = audio_config();
        let (v1, v1_again, v2) = (video_config(640), video_config(640), video_config(1280));
        let mut recording = Recording::new(Memory::default(), limits());
        run(&mut recording, source(3.0, 0.0, &v1, &a));
        // Another camera with identical settings: new Arcs, equal values.
        let a_again = audio_config();
        run(&mut recording, source(3.0, 3.0, &v1_again, &a_again));
        // A camera with another resolution and audio rate.
        let a2 = Arc::new(AudioConfig {
            sample_rate: 44_100,
            ..(*a).clone()
        });
        run(&mut recording, source(2.0, 6.0, &v2, &a2));
        recording.finish().unwrap();
        let notes = recording.take_notes();
        assert_eq!(
            closed(&notes),
            vec![("f1".into(), Why::NewConfig), ("f2".into(), Why::Stopped)]
        );
        let memory = recording.storage();
        assert_eq!(memory.files.len(), 2);
        let first = read(&memory.bytes(0));
        assert_eq!(first.width, 640);
        assert_eq!(first.sample_rate, Some(48_000));
        assert!(first.first_sync);
        assert!(
            (first.video_seconds - 6.0).abs() < 1e-9,
            "{}",
            first.video_seconds
        );
        assert_eq!(first.fragments, 6, "one fragment per second");
        let second = read(&memory.bytes(1));
        assert_eq!(second.width, 1280);
        assert_eq!(second.sample_rate, Some(44_100));
        assert!(second.first_sync);
        let durations: Vec<f64> = notes
            .iter()
            .filter_map(|n| match n {
                Note::Closed { duration, .. } => Some(*duration),
                _ => None,
            })
            .collect();
        assert!((durations[0] - 6.0).abs() < 0.01, "{durations:?}");
        // (The test's 44.1 kHz audio is 48 kHz frames relabelled, so it runs a little longer.)
        assert!((durations[1] - 2.0).abs() < 0.2, "{durations:?}");
    }

    #[test]
    fn splits_at_the_first_keyframe_past_the_duration_or_size() {
        let (v, a) = (video_config(640), audio_config());
        let mut recording = Recording::new(
            Memory::default(),
            Limits {
                split_duration: 2 * 90_000 + 1,
                ..limits()
            },
        );
        run(&mut recording, source(7.0, 0.0, &v, &a));
        recording.finish().unwrap();
        let notes = recording.take_notes();
        let whys: Vec<Why> = closed(&notes).into_iter().map(|(_, w)| w).collect();
        // Keyframes every second: the split waits for the one at 3 s, then 6 s.
        assert_eq!(whys, vec![Why::Split, Why::Split, Why::Stopped]);
        let memory = recording.storage();
        let seconds: Vec<f64> = (0..3)
            .map(|i| read(&memory.bytes(i)).video_seconds)
            .collect();
        assert_eq!(seconds, vec![3.0, 3.0, 1.0]);
        assert!((0..3).all(|i| read(&memory.bytes(i)).first_sync));

        let mut by_size = Recording::new(
            Memory::default(),
            Limits {
                split_bytes: 100 * 45,
                ..limits()
            },
        );
        // 100-byte video frames, 10-byte audio frames: ~3500 bytes a second.
        run(&mut by_size, source(4.0, 0.0, &v, &a));
        by_size.finish().unwrap();
        assert_eq!(
            by_size.storage().files.len(),
            2,
            "split at the 2 s keyframe"
        );
        assert!((read(&by_size.storage().bytes(0)).video_seconds - 2.0).abs() < 1e-9);
    }

    #[test]
    fn starts_at_a_keyframe_with_the_audio_that_overlaps_it() {
        let (v, a) = (video_config(640), audio_config());
        let mut recording = Recording::new(Memory::default(), limits());
        // Joins mid-GOP: audio and non-keyframes first.
        let frames: Vec<Frame> = source(3.0, 0.0, &v, &a)
            .into_iter()
            .filter(|f| crate::recording::fragmenter::time_of(f) >= 45_000)
            .collect();
        run(&mut recording, frames);
        recording.finish().unwrap();
        let bytes = recording.storage().bytes(0);
        let file = read(&bytes);
        assert!(file.first_sync);
        assert!((file.video_seconds - 2.0).abs() < 1e-9);
        let size = bytes.len() as u64;
        let reader = mp4::Mp4Reader::read_header(std::io::Cursor::new(bytes), size).unwrap();
        let first = &reader.moofs[0];
        let video_start = first.trafs[0].tfdt.as_ref().unwrap().base_media_decode_time;
        let audio_start = first.trafs[1].tfdt.as_ref().unwrap().base_media_decode_time;
        // The AAC frame under the keyframe starts a little before it: it is the origin.
        assert_eq!(audio_start, 0);
        assert!(video_start > 0 && video_start < 1920, "{video_start}");
    }

    #[test]
    fn an_audio_change_after_the_cut_keyframe_starts_the_file_there() {
        let (v, a) = (video_config(640), audio_config());
        let a2 = Arc::new(AudioConfig {
            sample_rate: 44_100,
            channels: 1,
            ..(*a).clone()
        });
        let mut recording = Recording::new(Memory::default(), limits());
        run(&mut recording, source(2.0, 0.0, &v, &a));
        // Same video settings, other audio: the keyframe comes before the new audio.
        run(&mut recording, source(2.0, 2.0, &video_config(640), &a2));
        recording.finish().unwrap();
        let memory = recording.storage();
        assert_eq!(memory.files.len(), 2);
        let (first, second) = (read(&memory.bytes(0)), read(&memory.bytes(1)));
        assert_eq!(first.sample_rate, Some(48_000));
        assert!((first.video_seconds - 2.0).abs() < 1e-9);
        assert_eq!(second.sample_rate, Some(44_100));
        assert!(second.first_sync);
        assert!((second.video_seconds - 2.0).abs() < 1e-9);
    }

    #[test]
    fn a_source_without_video_is_recorded_audio_only() {
        let a = audio_config();
        let mut recording = Recording::new(Memory::default(), limits());
        run(&mut recording, (0..200).map(|i| audio(&a, i)).collect());
        recording.finish().unwrap();
        let bytes = recording.storage().bytes(0);
        let size = bytes.len() as u64;
        let reader = mp4::Mp4Reader::read_header(std::io::Cursor::new(bytes), size).unwrap();
        assert_eq!(reader.moov.traks.len(), 1);
        let samples: usize = reader
            .moofs
            .iter()
            .map(|m| m.trafs[0].trun.as_ref().unwrap().sample_count as usize)
            .sum();
        assert_eq!(samples, 200, "the audio that waited is kept");
        assert!(reader.moofs.len() >= 4, "fragments of about a second");
    }

    #[test]
    fn stalled_video_does_not_hold_audio_back() {
        let (v, a) = (video_config(640), audio_config());
        let mut recording = Recording::new(Memory::default(), limits());
        // Video stops after 1 s; audio goes on for 9 s more.
        let frames: Vec<Frame> = source(10.0, 0.0, &v, &a)
            .into_iter()
            .filter(|f| !f.track.is_video() || f.dts < 90_000)
            .collect();
        run(&mut recording, frames);
        let held = recording.fragmenter.bytes();
        assert!(held < 2 * 48_000 / 1024 * 10 + 100, "{held} bytes held");
        let size = recording.current().unwrap().2;
        recording.finish().unwrap();
        assert!(size > 0);
        let file = read(&recording.storage().bytes(0));
        assert!(file.fragments >= 4, "{}", file.fragments);
    }

    #[test]
    fn a_gap_resumes_at_the_next_keyframe_in_the_same_file() {
        let (v, a) = (video_config(640), audio_config());
        let mut recording = Recording::new(Memory::default(), limits());
        let mut frames = source(4.0, 0.0, &v, &a);
        // Lose 1.3 s..2.2 s; the frame after the loss is flagged.
        frames.retain(|f| {
            let t = crate::recording::fragmenter::time_of(f);
            !(117_000..198_000).contains(&t)
        });
        let at = frames
            .iter()
            .position(|f| crate::recording::fragmenter::time_of(f) >= 198_000)
            .unwrap();
        frames[at].discontinuity = true;
        run(&mut recording, frames);
        recording.finish().unwrap();
        let memory = recording.storage();
        assert_eq!(memory.files.len(), 1);
        let file = read(&memory.bytes(0));
        // 0..1.3 s, then from the 3 s keyframe to 4 s (2.2..3 s is mid-GOP: skipped).
        assert!(
            (file.video_seconds - 2.3).abs() < 0.01,
            "{}",
            file.video_seconds
        );
    }

    #[test]
    fn a_failed_write_stops_with_the_file_at_its_last_fragment() {
        let (v, a) = (video_config(640), audio_config());
        let mut recording = Recording::new(Failing(3), limits());
        let mut error = None;
        for frame in source(5.0, 0.0, &v, &a) {
            if let Err(e) = recording.push(frame, Utc::now()) {
                error = Some(e);
                break;
            }
        }
        let error = error.expect("the third write fails");
        assert!(error.is_full());
        assert!(error.to_string().starts_with("writing full: "), "{error}");
        let notes = recording.take_notes();
        assert_eq!(closed(&notes), vec![("full".into(), Why::Failed)]);
        assert!(recording.current().is_none());
        let size = notes
            .iter()
            .find_map(|n| match n {
                Note::Closed { size, .. } => Some(*size),
                _ => None,
            })
            .unwrap();
        let wrote: u64 = notes
            .iter()
            .filter_map(|n| match n {
                Note::Wrote { bytes, .. } => Some(*bytes),
                _ => None,
            })
            .sum();
        assert_eq!(size, wrote, "two fragments survive");
    }

    #[test]
    fn limits_come_from_the_config() {
        let limits = Limits::from_config(&RecordConfig::default());
        assert_eq!(limits.fragment, 90_000);
        assert_eq!(limits.split_duration, 3600 * 90_000);
        assert_eq!(limits.split_bytes, 4096 * 1024 * 1024);
        let _ = video(&video_config(640), 0, true);
    }
}
