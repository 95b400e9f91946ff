//! A replica that cannot hold ':' in a name (FAT and exFAT drives, Windows FTP servers): its
//! endpoint is wrapped so that a Maildir info separator `:2,` is written `!2,` there and read
//! back as `:2,`. Everything above sees the store's names; only this wrapper knows.

use std::io::Read;

use crate::core::filter::Filter;
use crate::core::model::{Entry, Hash, Snapshot};
use crate::endpoint::{Endpoint, Result, Scan};
use crate::mail::maildir::{colon_to_replica, replica_to_colon};

pub struct ColonMap {
    inner: Box<dyn Endpoint>,
    sep: char,
}

impl ColonMap {
    pub fn new(inner: Box<dyn Endpoint>, sep: char) -> ColonMap {
        ColonMap { inner, sep }
    }

    /// A path as the replica holds it: only a file name's info separator changes.
    fn out(&self, path: &str) -> String {
        match path.rsplit_once('/') {
            Some((dir, name)) => format!("{dir}/{}", colon_to_replica(name, self.sep)),
            None => colon_to_replica(path, self.sep),
        }
    }

    fn back(&self, path: &str) -> String {
        match path.rsplit_once('/') {
            Some((dir, name)) => format!("{dir}/{}", replica_to_colon(name, self.sep)),
            None => replica_to_colon(path, self.sep),
        }
    }

    fn scan_back(&self, scan: Scan) -> Scan {
        let Scan { snapshot, issues, leftovers } = scan;
        let snapshot: Snapshot = snapshot.iter().map(|(path, entry)| (self.back(path), *entry)).collect();
        Scan { snapshot, issues, leftovers }
    }
}

impl Endpoint for ColonMap {
    fn url(&self) -> String {
        self.inner.url()
    }

    fn check_root(&self) -> Result<()> {
        self.inner.check_root()
    }

    fn parallelism(&self) -> usize {
        self.inner.parallelism()
    }

    fn scan(&self, filter: &Filter) -> Result<Scan> {
        self.inner.scan(filter).map(|scan| self.scan_back(scan))
    }

    fn scan_part(&self, filter: &Filter, shallow: &[String], deep: &[String]) -> Result<Scan> {
        let shallow: Vec<String> = shallow.iter().map(|p| self.out(p)).collect();
        let deep: Vec<String> = deep.iter().map(|p| self.out(p)).collect();
        self.inner.scan_part(filter, &shallow, &deep).map(|scan| self.scan_back(scan))
    }

    fn stat(&self, path: &str) -> Result<Option<Entry>> {
        self.inner.stat(&self.out(path))
    }

    fn open(&self, path: &str, expect: &Entry) -> Result<Box<dyn Read + Send + '_>> {
        self.inner.open(&self.out(path), expect)
    }

    fn write(
        &self,
        path: &str,
        data: &mut dyn Read,
        like: &Entry,
        replaces: Option<&Entry>,
        resume_from: u64,
    ) -> Result<Entry> {
        self.inner.write(&self.out(path), data, like, replaces, resume_from)
    }

    fn partial(&self, path: &str, like: &Entry) -> u64 {
        self.inner.partial(&self.out(path), like)
    }

    fn open_from(&self, path: &str, expect: &Entry, offset: u64) -> Result<Box<dyn Read + Send + '_>> {
        self.inner.open_from(&self.out(path), expect, offset)
    }

    fn mkdir(&self, path: &str) -> Result<()> {
        self.inner.mkdir(&self.out(path))
    }

    fn remove(&self, path: &str, expect: &Entry) -> Result<()> {
        self.inner.remove(&self.out(path), expect)
    }

    fn rename(&self, from: &str, to: &str, expect: &Entry) -> Result<Entry> {
        self.inner.rename(&self.out(from), &self.out(to), expect)
    }

    fn read_check_file(&self, path: &str, limit: usize) -> Result<Option<Vec<u8>>> {
        self.inner.read_check_file(path, limit)
    }

    fn flush(&self) -> Result<()> {
        self.inner.flush()
    }

    fn remove_leftover(&self, path: &str) -> Result<()> {
        // Leftovers come from a scan, which already gave the replica's own name back mapped.
        self.inner.remove_leftover(&self.out(path))
    }

    fn hash(&self, path: &str, expect: &Entry) -> Result<Hash> {
        self.inner.hash(&self.out(path), expect)
    }
}
