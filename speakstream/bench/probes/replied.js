// The reply has ended: the stats line under the chat has its timings.
() => (document.querySelector('#stats')?.innerText || '').includes('first token')
