DROP TABLE erased_subjects;
