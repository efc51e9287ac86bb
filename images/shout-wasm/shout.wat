;; shout: a JSON transformer in WebAssembly text. Reads one JSON document on
;; stdin and writes it back with every ASCII letter upper-cased, escapes kept
;; intact (the character after a backslash is left alone, so \n and \u00e9
;; stay valid). {"text": "hello"} becomes {"TEXT": "HELLO"}.
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  ;; 0..16: one iovec and a result slot; the document is read to 1024.. (1 MiB + a little).
  (memory (export "memory") 18)
  (global $start i32 (i32.const 1024))
  (global $end i32 (i32.const 1179648))

  (func $read_all (result i32)  ;; returns the number of bytes read
    (local $len i32) (local $n i32)
    (block $eof
      (loop $more
        (i32.store (i32.const 0) (i32.add (global.get $start) (local.get $len)))
        (i32.store (i32.const 4) (i32.sub (i32.sub (global.get $end) (global.get $start)) (local.get $len)))
        (if (i32.eqz (i32.load (i32.const 4))) (then (call $proc_exit (i32.const 2))))  ;; input too large
        (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8))
          (then (call $proc_exit (i32.const 3))))
        (local.set $n (i32.load (i32.const 8)))
        (br_if $eof (i32.eqz (local.get $n)))
        (local.set $len (i32.add (local.get $len) (local.get $n)))
        (br $more)))
    (local.get $len))

  (func $shout (param $len i32)
    (local $p i32) (local $c i32) (local $escaped i32)
    (local.set $p (global.get $start))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $p) (i32.add (global.get $start) (local.get $len))))
        (local.set $c (i32.load8_u (local.get $p)))
        (if (local.get $escaped)
          (then (local.set $escaped (i32.const 0)))
          (else
            (if (i32.eq (local.get $c) (i32.const 92))  ;; backslash
              (then (local.set $escaped (i32.const 1)))
              (else
                (if (i32.and (i32.ge_u (local.get $c) (i32.const 97)) (i32.le_u (local.get $c) (i32.const 122)))
                  (then (i32.store8 (local.get $p) (i32.sub (local.get $c) (i32.const 32)))))))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $next))))

  (func $write_all (param $len i32)
    (local $p i32) (local $left i32)
    (local.set $p (global.get $start))
    (local.set $left (local.get $len))
    (block $done
      (loop $more
        (br_if $done (i32.eqz (local.get $left)))
        (i32.store (i32.const 0) (local.get $p))
        (i32.store (i32.const 4) (local.get $left))
        (if (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))
          (then (call $proc_exit (i32.const 4))))
        (local.set $p (i32.add (local.get $p) (i32.load (i32.const 8))))
        (local.set $left (i32.sub (local.get $left) (i32.load (i32.const 8))))
        (br $more))))

  (func (export "_start")
    (local $len i32)
    (local.set $len (call $read_all))
    (call $shout (local.get $len))
    (call $write_all (local.get $len))))
