import NIOCore
import Testing
import WebSocketCore

@testable import WebSockets

/// Every transition of the close handshake and the heartbeat, driven without a channel.
@Suite struct ConnectionStateMachineTests {
    typealias Machine = ConnectionStateMachine
    typealias Steps = ConnectionStateMachine.CloseSteps

    private func frame(_ code: CloseCode, _ reason: String = "") throws -> ByteBuffer {
        try ClosePayload.make(code: code, reason: reason)
    }

    /// A machine of `role` that has sent its close frame.
    private func closing(_ role: Role) -> Machine {
        var machine = Machine(role: role)
        _ = machine.closeRequested(code: .normalClosure, reason: "", protocolErrorPending: false)
        return machine
    }

    // MARK: Open

    @Test func anOpenConnectionSendsReadsAndHonoursPauses() {
        let machine = Machine(role: .server)
        #expect(machine.isOpen)
        #expect(machine.acceptsFrames)
        #expect(!machine.readsThroughPause)
        #expect(!machine.isClosed)
        #expect(machine.readyState == .open)
    }

    // MARK: We close first

    @Test(arguments: [Role.server, .client]) func ourCloseSendsItsFrameStartsTheTimerAndReadsOn(role: Role) throws {
        var machine = Machine(role: role)
        let action = machine.closeRequested(code: CloseCode(4321), reason: "bye", protocolErrorPending: false)
        let expected = Steps(closeFrame: try frame(CloseCode(4321), "bye"), startCloseTimer: true, readThroughPause: true)
        #expect(action == .close(expected))
        #expect(machine.state == .closeSent)
        #expect(machine.readyState == .closing)
        #expect(!machine.isOpen)
        #expect(machine.acceptsFrames)
        #expect(machine.readsThroughPause)
    }

    @Test func theServerClosesTCPWhenThePeerAnswersItsClose() {
        var machine = closing(.server)
        #expect(machine.closeFrameReceived(code: .normalClosure) == Steps(closeWhenFlushed: true))
        #expect(machine.state == .closeExchanged)
        #expect(!machine.acceptsFrames)
        #expect(machine.readyState == .closing)
    }

    @Test func theClientWaitsForTheServerToCloseTCPAfterTheAnswer() {
        var machine = closing(.client)
        // Nothing to write and no new timer: the one started by our close bounds the wait.
        #expect(machine.closeFrameReceived(code: .normalClosure) == Steps())
        #expect(machine.state == .closeExchanged)
        #expect(!machine.acceptsFrames)
        #expect(machine.readsThroughPause)
    }

    @Test func aSecondCloseRequestChangesNothing() {
        var machine = closing(.client)
        #expect(machine.closeRequested(code: .goingAway, reason: "", protocolErrorPending: false) == .alreadyClosing)
        #expect(machine.state == .closeSent)
        _ = machine.closeFrameReceived(code: .normalClosure)
        #expect(machine.closeRequested(code: .goingAway, reason: "", protocolErrorPending: false) == .alreadyClosing)
        #expect(machine.state == .closeExchanged)
        _ = machine.channelInactive(receivedClose: (.normalClosure, ""), failed: false)
        #expect(machine.closeRequested(code: .goingAway, reason: "", protocolErrorPending: false) == .alreadyClosing)
        #expect(machine.state == .closed)
    }

    @Test func aCloseThatMayNotBeSentLeavesTheConnectionOpen() {
        var machine = Machine(role: .client)
        guard case .invalid(let message) = machine.closeRequested(code: .abnormalClosure, reason: "", protocolErrorPending: false)
        else {
            Issue.record("1006 was accepted")
            return
        }
        #expect(message.contains("1006"))
        let longReason = String(repeating: "x", count: ClosePayload.maxReasonBytes + 1)
        guard case .invalid = machine.closeRequested(code: .normalClosure, reason: longReason, protocolErrorPending: false)
        else {
            Issue.record("a 124-byte reason was accepted")
            return
        }
        #expect(machine.isOpen)
    }

    @Test func aCloseBehindAPendingProtocolErrorFailsInstead() throws {
        var machine = Machine(role: .server)
        #expect(machine.closeRequested(code: .normalClosure, reason: "", protocolErrorPending: true) == .failWithPendingError)
        #expect(machine.isOpen)
        let expected = try frame(.protocolError, "bad opcode")
        #expect(machine.failed(WebSocketError.protocolError("bad opcode")).closeFrame == expected)
    }

    // MARK: The peer closes first

    @Test func theServerEchoesThePeersCodeAndClosesTCP() throws {
        var machine = Machine(role: .server)
        let steps = machine.closeFrameReceived(code: CloseCode(4001))
        #expect(steps == Steps(closeFrame: try frame(CloseCode(4001)), closeWhenFlushed: true, startCloseTimer: true))
        #expect(machine.state == .closeExchanged)
        #expect(machine.readyState == .closing)
        #expect(!machine.isOpen)
        #expect(!machine.acceptsFrames)
    }

    @Test func theClientEchoesThePeersCodeAndWaitsForTCPToClose() throws {
        var machine = Machine(role: .client)
        let steps = machine.closeFrameReceived(code: .goingAway)
        #expect(steps == Steps(closeFrame: try frame(.goingAway), startCloseTimer: true))
        #expect(machine.state == .closeExchanged)
    }

    @Test func aCloseWithoutACodeIsAnsweredWithoutOne() {
        var machine = Machine(role: .server)
        #expect(machine.closeFrameReceived(code: .noStatusReceived).closeFrame == ByteBuffer())
    }

    @Test func aCloseFrameAfterTheExchangeChangesNothing() {
        var machine = Machine(role: .server)
        _ = machine.closeFrameReceived(code: .normalClosure)
        #expect(machine.closeFrameReceived(code: .normalClosure) == Steps())
        #expect(machine.state == .closeExchanged)
        _ = machine.channelInactive(receivedClose: (.normalClosure, ""), failed: false)
        #expect(machine.closeFrameReceived(code: .normalClosure) == Steps())
        #expect(machine.state == .closed)
    }

    // MARK: Failures

    @Test(arguments: [Role.server, .client]) func aFailureWhileOpenSendsItsCodeAndClosesTCP(role: Role) throws {
        var machine = Machine(role: role)
        let steps = machine.failed(WebSocketError(.policyViolation, "too slow"))
        #expect(steps == Steps(closeFrame: try frame(.policyViolation, "too slow"), closeWhenFlushed: true, startCloseTimer: true))
        #expect(machine.state == .closeExchanged)
        #expect(machine.readyState == .closing)
    }

    @Test func aFailureOfOurOwnIsAnInternalError() throws {
        struct Broken: Error {}
        var machine = Machine(role: .server)
        let expected = try frame(.internalError)
        #expect(machine.failed(Broken()).closeFrame == expected)
    }

    @Test func aFailureReasonIsCutToFitTheCloseFrame() throws {
        var machine = Machine(role: .server)
        let reason = String(repeating: "é", count: 100)  // 200 bytes
        let steps = machine.failed(WebSocketError(.messageTooBig, reason))
        let cut = try frame(.messageTooBig, String(repeating: "é", count: ClosePayload.maxReasonBytes / 2))
        #expect(steps.closeFrame == cut)
    }

    @Test func aProtocolErrorWhileClosingSendsNoSecondCloseFrame() {
        var machine = closing(.client)
        // No frame (ours went), no timer (ours runs): TCP closes once what was written is out.
        #expect(machine.failed(WebSocketError.protocolError("bad frame")) == Steps(closeWhenFlushed: true))
        #expect(machine.state == .closeExchanged)
        #expect(!machine.acceptsFrames)
    }

    @Test func aFailureAfterTheExchangeClosesTCP() {
        var machine = Machine(role: .client)
        _ = machine.closeFrameReceived(code: .normalClosure)
        #expect(machine.failed(WebSocketError.protocolError("late")) == Steps(closeWhenFlushed: true))
        #expect(machine.state == .closeExchanged)
    }

    @Test func aFailureAfterTheChannelClosedDoesNothing() {
        var machine = Machine(role: .server)
        _ = machine.channelInactive(receivedClose: nil, failed: false)
        #expect(machine.failed(WebSocketError.protocolError("late")) == Steps())
        #expect(machine.state == .closed)
    }

    // MARK: Channel inactive

    @Test func tcpGoingWhileOpenIsAnAbnormalClosure() {
        var machine = Machine(role: .server)
        let info = machine.channelInactive(receivedClose: nil, failed: false)
        #expect(info == CloseInfo(code: .abnormalClosure, reason: "", wasClean: false))
        #expect(machine.isClosed)
        #expect(machine.readyState == .closed)
        #expect(!machine.acceptsFrames)
        #expect(!machine.isOpen)
    }

    @Test func tcpGoingBeforeThePeerAnsweredOurCloseIsAnAbnormalClosure() {
        var machine = closing(.client)
        #expect(machine.channelInactive(receivedClose: nil, failed: false) == CloseInfo(code: .abnormalClosure, reason: "", wasClean: false))
    }

    @Test func tcpGoingAfterTheExchangeReportsThePeersClose() {
        var machine = closing(.client)
        _ = machine.closeFrameReceived(code: CloseCode(4000))
        let info = machine.channelInactive(receivedClose: (CloseCode(4000), "done"), failed: false)
        #expect(info == CloseInfo(code: CloseCode(4000), reason: "done", wasClean: true))
    }

    @Test func aPeersCloseAfterAFailureIsNotClean() {
        var machine = Machine(role: .server)
        _ = machine.failed(WebSocketError.protocolError("bad"))
        let info = machine.channelInactive(receivedClose: (.protocolError, ""), failed: true)
        #expect(info == CloseInfo(code: .protocolError, reason: "", wasClean: false))
    }

    @Test func theCloseIsReportedOnce() {
        var machine = Machine(role: .server)
        #expect(machine.channelInactive(receivedClose: nil, failed: false) != nil)
        #expect(machine.channelInactive(receivedClose: nil, failed: false) == nil)
    }

    // MARK: Timers

    @Test func theCloseTimerDropsTCPUntilTheChannelIsClosed() {
        var machine = closing(.server)
        #expect(machine.closeTimeoutPassed() == .dropConnection)
        _ = machine.closeFrameReceived(code: .normalClosure)
        #expect(machine.closeTimeoutPassed() == .dropConnection)
        _ = machine.channelInactive(receivedClose: (.normalClosure, ""), failed: false)
        #expect(machine.closeTimeoutPassed() == .none)
    }

    @Test func aPongStopsTheDeadlineAndTheNextPingStartsAnother() {
        var machine = Machine(role: .client)
        #expect(machine.heartbeatDue() == .sendPing(startPongDeadline: true))
        #expect(machine.awaitingPong)
        let cancelsDeadline = machine.pongReceived()
        #expect(cancelsDeadline)
        #expect(!machine.awaitingPong)
        #expect(machine.heartbeatDue() == .sendPing(startPongDeadline: true))
    }

    @Test func unansweredPingsKeepTheFirstDeadline() {
        var machine = Machine(role: .server)
        #expect(machine.heartbeatDue() == .sendPing(startPongDeadline: true))
        #expect(machine.heartbeatDue() == .sendPing(startPongDeadline: false))
        #expect(machine.heartbeatDue() == .sendPing(startPongDeadline: false))
        #expect(machine.pongDeadlinePassed(excused: false) == .dropConnection)
    }

    @Test func framesOrOurOwnPauseExtendThePongDeadline() {
        var machine = Machine(role: .client)
        #expect(machine.heartbeatDue() == .sendPing(startPongDeadline: true))
        #expect(machine.pongDeadlinePassed(excused: true) == .extendDeadline)
        #expect(machine.awaitingPong)
        #expect(machine.heartbeatDue() == .sendPing(startPongDeadline: false))
        #expect(machine.pongDeadlinePassed(excused: false) == .dropConnection)
    }

    @Test func anUnaskedPongCancelsNothing() {
        var machine = Machine(role: .server)
        let cancelsDeadline = machine.pongReceived()
        #expect(!cancelsDeadline)
        #expect(machine.heartbeatDue() == .sendPing(startPongDeadline: true))
    }

    @Test func aPongWhileClosingStillStopsTheDeadline() {
        var machine = Machine(role: .server)
        _ = machine.heartbeatDue()
        _ = machine.closeRequested(code: .normalClosure, reason: "", protocolErrorPending: false)
        let cancelsDeadline = machine.pongReceived()
        #expect(cancelsDeadline)
        #expect(machine.pongDeadlinePassed(excused: false) == .dropConnection)
    }

    @Test func theHeartbeatStopsWhenTheConnectionLeavesOpen() {
        var closingMachine = closing(.client)
        #expect(closingMachine.heartbeatDue() == .stop)
        var failedMachine = Machine(role: .server)
        _ = failedMachine.failed(WebSocketError.protocolError("bad"))
        #expect(failedMachine.heartbeatDue() == .stop)
        var closedMachine = Machine(role: .server)
        _ = closedMachine.heartbeatDue()
        _ = closedMachine.channelInactive(receivedClose: nil, failed: false)
        #expect(closedMachine.heartbeatDue() == .stop)
        #expect(!closedMachine.awaitingPong)
        #expect(closedMachine.pongDeadlinePassed(excused: false) == .none)
    }
}
