// The page's only script besides its own: analytics-next as an npm user imports it.
import { AnalyticsBrowser } from '@segment/analytics-next'

window.AnalyticsBrowser = AnalyticsBrowser
