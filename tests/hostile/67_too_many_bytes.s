// case: one 320 KiB comment line (limit 256 KiB)
// category: huge-or-malformed
// expect: input_rejected
// repeat: 20480
// 0123456789abc