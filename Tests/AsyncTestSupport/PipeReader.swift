import Foundation

/// Reads the read end of `pipe` on a thread of its own until end of file, handing each chunk
/// to `onData` and, at the end, one empty `Data`. Call it after the child process has started:
/// it closes the parent's copy of the write end, or the read would never see end of file.
///
/// A blocking read rather than `FileHandle.readabilityHandler`: tearing down the libdispatch
/// read source behind that handler races the descriptor's close on Linux and can crash the
/// whole test process in `_dispatch_event_loop_drain` (swift-corelibs-libdispatch #949).
public func readUntilEnd(of pipe: Pipe, _ onData: @escaping @Sendable (Data) -> Void) {
    try? pipe.fileHandleForWriting.close()
    let handle = pipe.fileHandleForReading
    let thread = Thread {
        while true {
            let chunk = handle.availableData
            onData(chunk)
            if chunk.isEmpty { break }
        }
        try? handle.close()
    }
    thread.start()
}
