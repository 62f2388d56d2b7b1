import AsyncTestSupport
import BrokerProcess
import BrowserSupport
import Foundation
import Testing

/// `/` and `/admin` for a person who cannot see low contrast or use a mouse: every visible
/// text's contrast (WCAG 2.x) measured in the page, and the pages used with key events only.
@Suite(.serialized) struct AccessibilityTests {
    @Test func demoPageTextHasEnoughContrast() async throws {
        try await withDemo { _, broker, tabs in
            let page = try await tabs.open("\(broker.base)/?room=contrast")
            try await sendChat(page, name: "ann", text: "a message to measure")
            try await page.evaluate(demoState("demo.chat.length === 1 && demo.metrics.length >= 1"))
            try await checkContrast(page, "/")
        }
    }

    @Test func adminPageTextHasEnoughContrast() async throws {
        try await withDemo { _, broker, tabs in
            let page = try await tabs.open("\(broker.base)/admin")
            // A refused token first: the error line is measured too.
            try await page.evaluate(
                """
                document.getElementById('token').value = 'not-a-token';
                document.getElementById('token-form').requestSubmit();
                \(untilText("error"))
                """)
            try await checkContrast(page, "/admin with an error")
            try await signInAndTail(page, token: try broker.adminToken, topic: "demo.metrics")
            // A created token's line is measured too.
            try await page.evaluate(
                """
                document.getElementById('new-name').value = 'reader';
                document.getElementById('new-sub').value = 'demo.>';
                document.getElementById('create-form').requestSubmit();
                \(untilText("created"))
                """)
            try await checkContrast(page, "/admin signed in")
        }
    }

    @Test func theChatIsUsableFromTheKeyboardAlone() async throws {
        try await withDemo { _, broker, tabs in
            let page = try await tabs.open("\(broker.base)/?room=keys")
            try await focusPage(page)
            try await page.evaluate(demoState("demo.client.state === 'connected'"))
            try await tab(page, to: "#name")
            try await page.type("ann")
            try await page.press(.tab)
            try await expectFocus(page, "#text")
            try await page.type("Hello from the keyboard")
            try await page.press(.enter)
            // The name the page sent is the field's: a name kept from an earlier visit comes first.
            try await page.evaluate(
                demoState("demo.chat.length === 1 && demo.chat[0].text === 'Hello from the keyboard' "
                    + "&& demo.chat[0].name === document.getElementById('name').value.trim() && demo.chat[0].name.endsWith('ann')"))
            try await expectFocus(page, "#text")
            try await page.type("and Space on Send")
            try await page.press(.tab)
            try await expectFocus(page, #"button "Send""#)
            try await page.press(.space)
            try await page.evaluate(demoState("demo.chat.length === 2 && demo.chat[1].text === 'and Space on Send'"))
            try await page.press(.tab, shift: true)
            try await expectFocus(page, "#text")
            let shown = try await page.evaluate("[...document.querySelectorAll('#messages li')].map(e => e.childNodes[1].textContent)")
            #expect(shown.array as? [String] == ["Hello from the keyboard", "and Space on Send"])
        }
    }

    @Test func everyControlIsReachedByTabInOrderWithAVisibleFocus() async throws {
        try await withDemo { _, broker, tabs in
            let demo = try await tabs.open("\(broker.base)/?room=tabs")
            try await focusPage(demo)
            try await demo.evaluate(demoState("demo.client.state === 'connected' && demo.metrics.length >= 1"))
            try await checkTabOrder(demo, "/")

            let admin = try await tabs.open("\(broker.base)/admin")
            try await focusPage(admin)
            try await tab(admin, to: "#token")
            try await admin.type(try broker.adminToken)
            try await admin.press(.enter)
            // Signed in: the tables' Tail and Revoke buttons are controls too.
            let signedIn = """
                new Promise((resolve, reject) => {
                  const admin = window.switchboardAdmin;
                  const check = () => { if (admin.loaded >= 1 && document.querySelector('#topics button') && document.querySelector('#tokens button')) resolve(true); };
                  admin.listeners.add(check);
                  setTimeout(() => reject(new Error('the admin page did not sign in: ' + document.getElementById('error').textContent)), 20000);
                  check();
                })
                """
            try await admin.evaluate(signedIn)
            // Loaded again (the tab keeps the token) so the walk starts at the document's start.
            try await admin.navigate("\(broker.base)/admin")
            try await admin.evaluate(signedIn)
            try await checkTabOrder(admin, "/admin")
            // The page rebuilds its tables every 2 s; a focused row button keeps the focus.
            let revoke = try await tab(admin, until: { $0.hasPrefix(#"button[aria-label="Revoke"#) })
            try await admin.evaluate(
                """
                new Promise((resolve, reject) => {
                  const admin = window.switchboardAdmin;
                  const after = admin.loaded;
                  const check = () => { if (admin.loaded > after) resolve(true); };
                  admin.listeners.add(check);
                  setTimeout(() => reject(new Error('the admin page did not refresh')), 20000);
                })
                """)
            try await expectFocus(admin, revoke)
        }
    }

    /// Every visible text (text nodes, input values and placeholders, generated `::before`
    /// and `::after` content) against what is painted behind it: at least 4.5:1, or 3:1 for
    /// large text (24 px, or bold and 18.66 px).
    private func checkContrast(_ page: BrowserPage, _ name: String) async throws {
        let result = try #require(try await page.evaluate(pageChecks + "checks.contrast()").object)
        let checked = result["checked"] as? Int ?? 0
        #expect(checked >= 10, "\(name): only \(checked) texts measured")
        let offenders = result["offenders"] as? [String] ?? ["no result"]
        #expect(offenders.isEmpty, "\(name): text below its contrast minimum:\n\(offenders.joined(separator: "\n"))")
    }

    /// Tabs through a freshly loaded page (nothing focused) until the focus comes round again, and
    /// checks that the controls were reached in document order (no control skipped, none out
    /// of order), each with a visible focus indicator: an outline or shadow it has only when
    /// focused, an outline at 3:1 or more against what is around it.
    private func checkTabOrder(_ page: BrowserPage, _ name: String) async throws {
        var reached: [String] = []
        var focusedStyle: [String: [String: Any]] = [:]
        var restingStyle: [String: String] = [:]
        for _ in 0..<80 {
            try await page.press(.tab)
            let step = try #require(try await page.evaluate(pageChecks + "checks.step()").object)
            for (control, style) in step["others"] as? [String: String] ?? [:] { restingStyle[control] = style }
            // Between the last control and the first the focus may leave the page for a step.
            guard let focused = step["focused"] as? [String: Any], let control = focused["name"] as? String else { continue }
            if control == reached.first { break }
            reached.append(control)
            focusedStyle[control] = focused
        }
        let controls = try #require(try await page.evaluate(pageChecks + "checks.controls().map(checks.name)").array as? [String])
        #expect(!controls.isEmpty, "\(name): no controls found")
        #expect(reached.filter(controls.contains) == controls, "\(name): Tab reached \(reached), the page's controls are \(controls)")
        for control in reached {
            let focused = focusedStyle[control] ?? [:]
            let style = focused["style"] as? String ?? ""
            #expect(focused["visible"] as? Bool == true && style != restingStyle[control],
                "\(name): \(control) shows no focus: \(style) focused, \(restingStyle[control] ?? "never seen") otherwise")
            if let ring = focused["ringContrast"] as? Double {
                #expect(ring >= 3, "\(name): \(control)'s focus outline is \(String(format: "%.2f", ring)):1 against its surroundings")
            }
        }
    }

    /// Presses Tab until `control` (as `checks.name` names it) has the focus, at most 40 times.
    private func tab(_ page: BrowserPage, to control: String) async throws {
        _ = try await tab(page, until: { $0 == control })
    }

    /// Presses Tab until the focused control's name satisfies `wanted`; returns that name.
    private func tab(_ page: BrowserPage, until wanted: (String) -> Bool) async throws -> String {
        for _ in 0..<40 {
            try await page.press(.tab)
            if let focused = try await focusName(page), wanted(focused) { return focused }
        }
        throw TestFailure("Tab never reached the control looked for")
    }

    private func expectFocus(_ page: BrowserPage, _ control: String) async throws {
        let focused = try await focusName(page)
        #expect(focused == control, "the focus is on \(focused ?? "nothing"), not \(control)")
    }

    private func focusName(_ page: BrowserPage) async throws -> String? {
        try await page.evaluate(pageChecks + "document.activeElement === document.body ? null : checks.name(document.activeElement)")
            .string
    }

    /// Key events go to the focused page; a headless tab opened beside others may not be it.
    private func focusPage(_ page: BrowserPage) async throws {
        _ = try await page.send("Emulation.setFocusEmulationEnabled", ["enabled": true])
        _ = try await page.send("Page.bringToFront")
    }

    /// A promise of the element `id`'s text once it has some.
    private func untilText(_ id: String) -> String {
        """
        new Promise((resolve, reject) => {
          const element = document.getElementById(\(jsString(id)));
          const done = () => { if (element.textContent) { observer.disconnect(); resolve(element.textContent); } };
          const observer = new MutationObserver(done);
          observer.observe(element, { childList: true, characterData: true, subtree: true });
          setTimeout(() => reject(new Error('#' + \(jsString(id)) + ' stayed empty')), 20000);
          done();
        })
        """
    }
}

/// The measurements, defined in the page as `checks` (the expression after it can use them).
private let pageChecks = #"""
var checks = (() => {
  const rgba = (css) => {
    const m = /rgba?\(([^)]*)\)/.exec(css);
    if (!m) throw new Error('a colour this check does not read: ' + css);
    const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
    return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
  };
  const over = (top, below) => [0, 1, 2].map((i) => top[i] * top[3] + below[i] * (1 - top[3])).concat([1]);
  // WCAG 2.x relative luminance and contrast ratio.
  const luminance = (c) => {
    const [r, g, b] = c.slice(0, 3).map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const ratio = (a, b) => { const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x); return (hi + 0.05) / (lo + 0.05); };
  const name = (e) => {
    const tag = e.tagName.toLowerCase();
    if (e.id) return '#' + e.id;
    if (e.getAttribute('aria-label')) return `${tag}[aria-label="${e.getAttribute('aria-label')}"]`;
    if (['a', 'button'].includes(tag)) return `${tag} "${e.textContent.trim()}"`;
    const parts = [];
    for (let n = e; n && n !== document.body && parts.length < 3; n = n.parentElement) {
      parts.unshift(n.tagName.toLowerCase() + (n.id ? '#' + n.id : '') + [...n.classList].map((c) => '.' + c).join(''));
    }
    return parts.join(' > ');
  };
  // The background colours of `element` and its ancestors over the white canvas.
  const background = (element) => {
    const layers = [];
    for (let e = element; e; e = e.parentElement) {
      const style = getComputedStyle(e);
      if (style.backgroundImage !== 'none') throw new Error('a background image behind ' + name(e) + ': this check reads colours only');
      const colour = rgba(style.backgroundColor);
      if (colour[3] > 0) layers.push(colour);
      if (colour[3] === 1) break;
    }
    return layers.reverse().reduce((below, layer) => over(layer, below), [255, 255, 255, 1]);
  };
  const opacity = (element) => { let o = 1; for (let e = element; e; e = e.parentElement) o *= Number(getComputedStyle(e).opacity); return o; };
  // Not drawn, or clipped away for screen readers only (.visually-hidden).
  const hidden = (element) => {
    if (!element.checkVisibility({ opacityProperty: true, visibilityProperty: true })) return true;
    for (let e = element; e; e = e.parentElement) {
      const style = getComputedStyle(e);
      if (style.clip !== 'auto' || style.clipPath !== 'none') return true;
    }
    return false;
  };
  const contrast = () => {
    let checked = 0;
    const offenders = [];
    const check = (element, text, style, label) => {
      const size = parseFloat(style.fontSize);
      const large = size >= 24 || (Number(style.fontWeight) >= 700 && size >= 18.66);
      const colour = rgba(style.color);
      colour[3] *= opacity(element);
      const behind = background(element);
      const measured = ratio(over(colour, behind), behind);
      const needed = large ? 3 : 4.5;
      checked += 1;
      if (measured < needed) {
        offenders.push(`${label} "${text.trim().slice(0, 30)}": ${measured.toFixed(2)}:1 < ${needed}:1 `
          + `(${style.color} on rgb(${behind.slice(0, 3).map(Math.round).join(', ')}))`);
      }
    };
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let node; (node = walker.nextNode());) {
      const element = node.parentElement;
      if (node.textContent.trim() && !hidden(element)) check(element, node.textContent, getComputedStyle(element), name(element));
    }
    for (const element of document.body.querySelectorAll('*')) {
      if (hidden(element)) continue;
      for (const pseudo of ['::before', '::after']) {
        const style = getComputedStyle(element, pseudo);
        if (!['none', 'normal', '""'].includes(style.content)) check(element, style.content, style, name(element) + pseudo);
      }
      if (element instanceof HTMLInputElement && element.type !== 'hidden') {
        if (element.value) check(element, element.type === 'password' ? '(password)' : element.value, getComputedStyle(element), name(element) + ' value');
        else if (element.placeholder) check(element, element.placeholder, getComputedStyle(element, '::placeholder'), name(element) + '::placeholder');
      }
    }
    return { checked, offenders };
  };
  // What a keyboard user can reach, in document order.
  const controls = () => [...document.querySelectorAll('a[href], button, input, select, textarea, [tabindex]')]
    .filter((e) => e.tabIndex >= 0 && !e.disabled && e.type !== 'hidden' && e.checkVisibility());
  const focusStyle = (e) => { const s = getComputedStyle(e); return `outline ${s.outlineStyle} ${s.outlineWidth} ${s.outlineColor}; box-shadow ${s.boxShadow}`; };
  // The focused element's look, and every other control's look unfocused.
  const step = () => {
    const active = document.activeElement;
    const others = {};
    for (const e of controls()) if (e !== active) others[name(e)] = focusStyle(e);
    if (!active || active === document.body) return { others };
    const s = getComputedStyle(active);
    const outline = s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 1;
    const visible = outline || s.boxShadow !== 'none';
    const ringContrast = outline ? ratio(rgba(s.outlineColor), background(active.parentElement)) : null;
    return { others, focused: { name: name(active), style: focusStyle(active), visible, ringContrast } };
  };
  return { contrast, controls, step, name };
})();
"""#
