//! Each VM's provisioning record (what its guest agents last reported to the WireServer),
//! opaque bytes here: the provisioning engine owns their encoding, so the store does not depend
//! on it. One record per VM id, written by `provisioning::Provisioning` only.

use redb::{ReadableTable, TableDefinition};

use crate::store::embedded::Redb;
use crate::store::{Error, db};

/// VM id → the engine's encoded provisioning record.
pub(super) const PROVISIONING: TableDefinition<&str, &[u8]> = TableDefinition::new("provisioning");

impl Redb {
    /// Every VM's provisioning record, in VM id order.
    pub(super) fn provisioning_records(&self) -> Result<Vec<(String, Vec<u8>)>, Error> {
        self.db.read(|read| {
            let table = read.open_table(PROVISIONING).map_err(db)?;
            let mut records = Vec::new();
            for entry in table.iter().map_err(db)? {
                let (key, value) = entry.map_err(db)?;
                records.push((key.value().to_string(), value.value().to_vec()));
            }
            Ok(records)
        })
    }

    /// VM `vm`'s record, if it has one.
    pub(super) fn provisioning_record(&self, vm: &str) -> Result<Option<Vec<u8>>, Error> {
        self.db.read(|read| {
            let table = read.open_table(PROVISIONING).map_err(db)?;
            Ok(table
                .get(vm)
                .map_err(db)?
                .map(|value| value.value().to_vec()))
        })
    }

    /// Replaces VM `vm`'s record. Durable when it returns.
    pub(super) fn put_provisioning(&self, vm: &str, record: &[u8]) -> Result<(), Error> {
        self.db.write(|write| {
            write
                .open_table(PROVISIONING)
                .map_err(db)?
                .insert(vm, record)
                .map_err(db)?;
            Ok(())
        })
    }

    /// Removes VM `vm`'s record; `Ok(false)` if it had none.
    pub(super) fn delete_provisioning(&self, vm: &str) -> Result<bool, Error> {
        self.db.write(|write| {
            let existed = write
                .open_table(PROVISIONING)
                .map_err(db)?
                .remove(vm)
                .map_err(db)?
                .is_some();
            Ok(existed)
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::store::Store;

    #[test]
    fn records_survive_reopening_and_deletes_remove_them() {
        let dir = std::env::temp_dir().join(format!("azimds-store-prov-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("azimds.redb");
        let store = Store::open(&path).unwrap();
        assert!(store.provisioning_records().unwrap().is_empty());
        store.put_provisioning("b", b"two").unwrap();
        store.put_provisioning("a", b"one").unwrap();
        store.put_provisioning("a", b"three").unwrap();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(
            store.provisioning_records().unwrap(),
            [
                ("a".to_string(), b"three".to_vec()),
                ("b".into(), b"two".to_vec())
            ]
        );
        assert!(store.delete_provisioning("a").unwrap());
        assert!(!store.delete_provisioning("a").unwrap());
        assert_eq!(store.provisioning_records().unwrap().len(), 1);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
