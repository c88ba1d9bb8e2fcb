//! SNTP probe of the time servers -> plain data (being written).
